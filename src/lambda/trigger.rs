//! `trigger`: S3 "object created" (S3 notification or EventBridge) → one Step Functions execution
//! per object version. The execution name is derived from bucket, key and version/ETag, so a
//! re-delivered event finds the execution already there, which counts as success.

use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::Value;

use super::{Started, TriggerOutput};
use crate::app::{run_input, wanted, Env};
use crate::error::ChuteError;
use crate::routing::ObjectRef;

/// Objects named by an S3 notification (`Records[]`) or an EventBridge "Object Created" event.
pub fn objects(event: &Value) -> Result<Vec<ObjectRef>, ChuteError> {
    let text = |v: &Value| v.as_str().map(str::to_string);
    if let Some(records) = event.get("Records").and_then(Value::as_array) {
        return records
            .iter()
            .filter(|r| {
                r.get("eventName")
                    .and_then(Value::as_str)
                    .is_none_or(|n| n.starts_with("ObjectCreated"))
            })
            .map(|r| {
                let s3 = &r["s3"];
                Ok(ObjectRef {
                    bucket: text(&s3["bucket"]["name"]).ok_or_else(|| bad("s3.bucket.name"))?,
                    // Keys in S3 notifications are URL-encoded, spaces as `+`.
                    key: url_decode(
                        &text(&s3["object"]["key"]).ok_or_else(|| bad("s3.object.key"))?,
                    ),
                    etag: text(&s3["object"]["eTag"]),
                    version_id: text(&s3["object"]["versionId"]),
                })
            })
            .collect();
    }
    if event.get("detail-type").and_then(Value::as_str) == Some("Object Created") {
        let detail = &event["detail"];
        return Ok(vec![ObjectRef {
            bucket: text(&detail["bucket"]["name"]).ok_or_else(|| bad("detail.bucket.name"))?,
            key: text(&detail["object"]["key"]).ok_or_else(|| bad("detail.object.key"))?,
            etag: text(&detail["object"]["etag"]),
            version_id: text(&detail["object"]["version-id"]),
        }]);
    }
    Err(ChuteError::Fatal(
        "the event is neither an S3 notification nor an EventBridge Object Created event".into(),
    ))
}

fn bad(field: &str) -> ChuteError {
    ChuteError::Fatal(format!("the S3 event has no {field}"))
}

/// Decodes `%XX` escapes and `+` (space) as S3 notifications encode keys.
pub fn url_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                    16,
                ) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub async fn handle(env: &Env, event: LambdaEvent<Value>) -> Result<TriggerOutput, Diagnostic> {
    let event = &event.payload;
    let arn = env
        .config
        .state_machine_arn
        .as_deref()
        .ok_or_else(|| ChuteError::Config("CHUTE_STATE_MACHINE_ARN is not set".into()))?;
    let mut output = TriggerOutput::default();
    for object in objects(event)? {
        if !wanted(&env.config, &object.key) {
            tracing::info!(bucket = %object.bucket, key = %object.key, prefix = %env.config.incoming_prefix, "ignored: not a data file under the incoming prefix");
            output.ignored.push(object.key);
            continue;
        }
        // HEAD gives the ETag when the event lacks it, and the per-file overrides in user metadata.
        let info = env.blob.head(&object.bucket, &object.key).await?;
        let input = run_input(&env.config, &object, &info);
        let run_id = input.run_id.clone();
        let new = env.workflow.start(arn, &input).await?;
        tracing::info!(run_id = %run_id, key = %object.key, new, "execution started");
        output.started.push(Started {
            run_id,
            key: object.key,
            new,
        });
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_url_decoded() {
        assert_eq!(
            url_decode("incoming/shoes/Spring+sale%2C+2026.csv"),
            "incoming/shoes/Spring sale, 2026.csv"
        );
        assert_eq!(url_decode("100%"), "100%");
    }
}
