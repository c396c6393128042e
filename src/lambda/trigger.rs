//! `trigger`: S3 "object created" (S3 notification or EventBridge) → one Step Functions execution
//! per object version. The execution name is derived from bucket, key and version/ETag, so a
//! re-delivered event finds the execution already there, which counts as success.

use aws_sdk_sfn::error::ProvideErrorMetadata;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::Value;

use super::{now_rfc3339, Config, Env, RunInput, Started, TriggerOutput};
use crate::blob::ObjectInfo;
use crate::error::{ChuteError, FileCode, FileError};
use crate::feed::Mode;
pub use crate::routing::{run_id, ObjectRef};
use crate::routing::{source, DEFAULT_SOURCE};

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

/// The execution input of a run of `object` (HEAD told `info`): the run id, the schema and chunk
/// size from the object's metadata (`chute-schema`, `chute-chunk-bytes`) or the settings, the
/// file's source ([`crate::routing::source`]) and mode (see [`mode_of`]). `chute backfill` builds its runs with this too, so both
/// start the same execution for the same version.
pub fn run_input(config: &Config, object: &ObjectRef, info: &ObjectInfo) -> RunInput {
    let etag = object
        .etag
        .clone()
        .map(|e| e.trim_matches('"').to_string())
        .unwrap_or(info.etag.clone());
    let schema = info
        .metadata
        .get("chute-schema")
        .cloned()
        .unwrap_or_else(|| config.default_schema.clone());
    let (source, unusable) = match source(&config.incoming_prefix, &object.key, &info.metadata) {
        Ok(source) => (source, None),
        Err(e) => (DEFAULT_SOURCE.to_string(), Some(e)),
    };
    let settings = match unusable {
        Some(e) => Err(e),
        None => mode_of(config, &schema, &source, info),
    };
    let (mode, force_stale, refused) = match settings {
        Ok((mode, force)) => (mode, force, None),
        // A refused run writes nothing whatever happens: validate refuses it before any write.
        Err(e) => (Mode::DryRun, false, Some(e)),
    };
    RunInput {
        run_id: run_id(object, &etag),
        bucket: object.bucket.clone(),
        key: object.key.clone(),
        etag,
        version_id: object.version_id.clone().or(info.version_id.clone()),
        schema,
        feed_source: source,
        mode,
        force_stale,
        refused,
        chunk_bytes: info
            .metadata
            .get("chute-chunk-bytes")
            .and_then(|v| v.parse().ok()),
        requested_at: now_rfc3339(),
        map_concurrency: config.map_concurrency,
        tolerated_failure_percent: config.tolerated_failure_percent,
    }
}

/// The file's mode (metadata `chute-mode`, else the schema's setting for `source`; the default
/// when the schema does not load, which validate then refuses) and `chute-force-stale`.
pub fn mode_of(
    config: &Config,
    schema: &str,
    source: &str,
    info: &ObjectInfo,
) -> Result<(Mode, bool), FileError> {
    let refuse = |why: String| FileError::new(FileCode::Settings, why);
    let mode = match info.metadata.get("chute-mode") {
        Some(text) => Mode::from_metadata(text).map_err(refuse)?,
        None => config
            .schema(schema)
            .map(|s| s.feed.for_source(source).mode)
            .unwrap_or_default(),
    };
    let force_stale = match info.metadata.get("chute-force-stale") {
        None => false,
        Some(text) => match text.trim().to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            _ => {
                return Err(refuse(format!(
                    "chute-force-stale `{text}` is neither true nor false"
                )))
            }
        },
    };
    Ok((mode, force_stale))
}

/// Names of files that start runs (any case). The name only filters what is dropped beside the
/// data (notes, images): how a file is read is told by its bytes (see [`crate::input`]).
pub const WANTED_SUFFIXES: [&str; 7] = [".csv", ".tsv", ".txt", ".gz", ".zst", ".zip", ".xlsx"];

/// Whether `key` starts runs: a data file ([`WANTED_SUFFIXES`]) under the incoming prefix.
pub fn wanted(config: &Config, key: &str) -> bool {
    let name = key.to_ascii_lowercase();
    key.starts_with(&config.incoming_prefix) && WANTED_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// Starts the run's execution, named by its run id; `Ok(false)` when that execution already exists
/// (a re-delivered event, a repeated backfill), which counts as done.
pub async fn start(
    sfn: &aws_sdk_sfn::Client,
    state_machine_arn: &str,
    input: &RunInput,
) -> Result<bool, ChuteError> {
    let started = sfn
        .start_execution()
        .state_machine_arn(state_machine_arn)
        .name(&input.run_id)
        .input(serde_json::to_string(input).expect("serialisable"))
        .send()
        .await;
    match started {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_execution_already_exists()) =>
        {
            Ok(false)
        }
        Err(e) if e.code() == Some("ExecutionAlreadyExists") => Ok(false),
        Err(e) => Err(crate::aws::classify("StartExecution", e)),
    }
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
        let new = start(&env.sfn, arn, &input).await?;
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

    /// A schema directory with `feedy`: the products schema with a full-refresh source `erp`.
    fn schema_dir() -> &'static std::path::Path {
        static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
        DIR.get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("chute-trigger-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let products = std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/products.toml"),
            )
            .unwrap();
            let feedy = products.replace("name = \"products\"", "name = \"feedy\"");
            std::fs::write(
                dir.join("feedy.toml"),
                format!("{feedy}\n[sources.erp]\nmode = \"full\"\n"),
            )
            .unwrap();
            dir
        })
    }

    fn input(key: &str, metadata: &[(&str, &str)]) -> RunInput {
        let config = Config {
            schema_dir: Some(schema_dir().to_path_buf()),
            default_schema: "feedy".into(),
            ..Config::from_env().unwrap()
        };
        let object = ObjectRef {
            bucket: "b".into(),
            key: key.into(),
            etag: Some("e".into()),
            version_id: None,
        };
        let info = ObjectInfo {
            etag: "e".into(),
            size: 1,
            version_id: None,
            metadata: metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        run_input(&config, &object, &info)
    }

    #[test]
    fn the_source_picks_its_configured_mode_and_metadata_overrides_it() {
        let erp = input("incoming/erp/a.csv", &[]);
        assert_eq!(
            (erp.feed_source.as_str(), erp.mode, erp.force_stale),
            ("erp", Mode::Full, false)
        );
        assert_eq!(erp.refused, None);
        let other = input("incoming/shoes/a.csv", &[]);
        assert_eq!(
            (other.feed_source.as_str(), other.mode),
            ("shoes", Mode::Incremental)
        );
        let dry = input(
            "incoming/a.csv",
            &[
                ("chute-source", "erp"),
                ("chute-mode", "dry-run"),
                ("chute-force-stale", "TRUE"),
            ],
        );
        assert_eq!(
            (dry.feed_source.as_str(), dry.mode, dry.force_stale),
            ("erp", Mode::DryRun, true)
        );
    }

    #[test]
    fn unusable_metadata_starts_a_run_that_validate_refuses_and_that_writes_nothing() {
        for (metadata, expected) in [
            (("chute-mode", "fulll"), "chute-mode `fulll` is not a mode"),
            (
                ("chute-force-stale", "yes"),
                "chute-force-stale `yes` is neither",
            ),
            (("chute-source", "a/b"), "source name `a/b` must be"),
        ] {
            let refused = input("incoming/erp/a.csv", &[metadata]);
            let error = refused.refused.expect("refused");
            assert_eq!(error.code, FileCode::Settings);
            assert!(error.message.contains(expected), "{}", error.message);
            assert_eq!(refused.mode, Mode::DryRun);
        }
    }

    #[test]
    fn compressed_files_and_spreadsheets_start_runs() {
        let config = Config::from_env().unwrap();
        let key = |name: &str| format!("{}{name}", config.incoming_prefix);
        for name in [
            "a.csv", "a.CSV", "a.csv.gz", "a.gz", "a.zst", "a.zip", "a.xlsx", "a.tsv", "t/a.txt",
        ] {
            assert!(wanted(&config, &key(name)), "{name}");
        }
        for name in ["a.pdf", "a.csv.bak", "notes"] {
            assert!(!wanted(&config, &key(name)), "{name}");
        }
        assert!(!wanted(&config, "elsewhere/a.csv"));
    }

    #[test]
    fn keys_are_url_decoded() {
        assert_eq!(
            url_decode("incoming/shoes/Spring+sale%2C+2026.csv"),
            "incoming/shoes/Spring sale, 2026.csv"
        );
        assert_eq!(url_decode("100%"), "100%");
    }
}
