//! SES v2: the report email ([`events`]: the run-finished event). Throttling is retried here with
//! backoff; a permanent failure is returned for the report to record (it never loses the report).

pub mod events;
#[cfg(test)]
mod kept;

use std::time::Duration;

use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};

use crate::error::ChuteError;

#[derive(Clone)]
pub struct Mailer {
    client: aws_sdk_sesv2::Client,
    /// Sent with every email, so the account's event destinations (bounces, complaints) see them.
    configuration_set: Option<String>,
}

/// One email: HTML plus a plain-text alternative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub html: String,
    pub text: String,
}

impl Mailer {
    pub fn new(sdk: &aws_config::SdkConfig, configuration_set: Option<String>) -> Self {
        Mailer {
            client: aws_sdk_sesv2::Client::new(sdk),
            configuration_set,
        }
    }

    /// Sends, retrying throttling up to `attempts` times with exponential backoff; returns the SES
    /// message id.
    pub async fn send(&self, email: &Email, attempts: u32) -> Result<String, ChuteError> {
        let content = |text: &str| {
            Content::builder()
                .data(text)
                .charset("UTF-8")
                .build()
                .expect("data is set")
        };
        let message = Message::builder()
            .subject(content(&email.subject))
            .body(
                Body::builder()
                    .html(content(&email.html))
                    .text(content(&email.text))
                    .build(),
            )
            .build();
        let mut delay = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            let sent = self
                .client
                .send_email()
                .from_email_address(&email.from)
                .set_configuration_set_name(self.configuration_set.clone())
                .destination(
                    Destination::builder()
                        .set_to_addresses(Some(email.to.clone()))
                        .build(),
                )
                .content(EmailContent::builder().simple(message.clone()).build())
                .send()
                .await;
            match sent {
                Ok(out) => return Ok(out.message_id().unwrap_or_default().to_string()),
                Err(e) => match crate::aws::classify("SES SendEmail", e) {
                    ChuteError::Transient(_) if attempt < attempts => {
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                        attempt += 1;
                    }
                    other => return Err(other),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_sesv2::config::{BehaviorVersion, Credentials, Region};

    use super::kept::KeepBody;
    use super::*;

    async fn sent_body(configuration_set: Option<&str>) -> serde_json::Value {
        let kept = KeepBody::default();
        let config = aws_sdk_sesv2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .credentials_provider(Credentials::new("id", "secret", None, None, "test"))
            .interceptor(kept.clone())
            .build();
        let mailer = Mailer {
            client: aws_sdk_sesv2::Client::from_conf(config),
            configuration_set: configuration_set.map(str::to_string),
        };
        let email = Email {
            from: "chute@example.com".into(),
            to: vec!["team@example.com".into()],
            subject: "s".into(),
            html: "<p>h</p>".into(),
            text: "t".into(),
        };
        assert!(
            mailer.send(&email, 1).await.is_err(),
            "the request never leaves"
        );
        kept.json()
    }

    #[tokio::test]
    async fn every_email_names_the_configured_configuration_set() {
        let body = sent_body(Some("chute-reports")).await;
        assert_eq!(body["ConfigurationSetName"], "chute-reports", "{body}");
        assert_eq!(body["FromEmailAddress"], "chute@example.com");
        let body = sent_body(None).await;
        assert!(body.get("ConfigurationSetName").is_none(), "{body}");
    }
}
