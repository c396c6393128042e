//! Secrets Manager: the MongoDB URI on AWS (`CHUTE_MONGODB_SECRET_ARN`). The one place the
//! pipeline calls the Secrets Manager API.

use crate::error::ChuteError;

/// A Secrets Manager client: build it once per container and share it.
#[derive(Clone)]
pub struct Secrets {
    client: aws_sdk_secretsmanager::Client,
}

impl Secrets {
    pub fn new(sdk: &aws_config::SdkConfig) -> Secrets {
        Secrets {
            client: aws_sdk_secretsmanager::Client::new(sdk),
        }
    }

    /// The MongoDB URI the secret holds: its string, or JSON with a `uri` field. Never logged.
    pub async fn mongodb_uri(&self, arn: &str) -> Result<String, ChuteError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .map_err(|e| crate::aws::classify("Secrets Manager", e))?;
        uri_of(out.secret_string().unwrap_or_default())
    }
}

fn uri_of(text: &str) -> Result<String, ChuteError> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => v
            .get("uri")
            .and_then(|u| u.as_str())
            .map(str::to_string)
            .ok_or_else(|| {
                ChuteError::Config("the MongoDB secret is JSON without a `uri` field".into())
            }),
        Err(_) => Ok(text.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_the_uri_itself_or_json_with_a_uri_field() {
        assert_eq!(uri_of("mongodb://db/x").unwrap(), "mongodb://db/x");
        assert_eq!(
            uri_of(r#"{"uri": "mongodb+srv://c.net"}"#).unwrap(),
            "mongodb+srv://c.net"
        );
        assert!(matches!(
            uri_of(r#"{"url": "mongodb://db"}"#),
            Err(ChuteError::Config(_))
        ));
    }
}
