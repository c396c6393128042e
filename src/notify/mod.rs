//! SES v2: the report email. Throttling is retried here with backoff; a permanent failure is
//! returned for the report to record (it never loses the report).

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
