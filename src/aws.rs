//! Shared AWS SDK set-up and error sorting. Endpoints come from the standard environment
//! (`AWS_ENDPOINT_URL`), so the same code reaches AWS or the local stack.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::error::ChuteError;

/// Loads region, credentials and endpoint overrides from the environment, once per container.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}

/// Sorts AWS SDK errors: network trouble, throttling and 5xx are transient; the rest (missing
/// object, access denied, a changed file) is not.
pub fn classify<E, R>(what: &str, e: SdkError<E, R>) -> ChuteError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    const THROTTLING: &[&str] = &[
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "RequestTimeout",
        "InternalError",
        "ServiceUnavailable",
    ];
    let transient = match &e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(s) => s.err().code().is_some_and(|c| THROTTLING.contains(&c)),
        _ => false,
    };
    let detail = match e.as_service_error() {
        Some(s) => format!(
            "{}: {}",
            s.code().unwrap_or("error"),
            s.message().unwrap_or_default()
        ),
        None => aws_error_chain(&e),
    };
    let message = format!("{what}: {detail}");
    if transient {
        ChuteError::Transient(message)
    } else {
        ChuteError::Fatal(message)
    }
}

fn aws_error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
