//! Lambda glue: [`serve`] (the runtime loop and the error mapping), [`events`] (what passes
//! between states) and [`metrics`] (EMF lines). One module per function holds its handler
//! ([`stale`] holds the report step's stale marking, [`delta`] the snapshot's moves); `functions/<name>/src/main.rs` only calls
//! [`serve`] with it. The settings and clients the handlers share with the command line are in
//! [`crate::app`].

pub mod delta;
pub mod events;
pub mod import;
pub mod metrics;
pub mod report;
pub mod stale;
pub mod transform;
pub mod trigger;
pub mod validate;

use lambda_runtime::Diagnostic;
use serde::Serialize;
use tracing::Instrument;

use crate::error::ChuteError;

use crate::app::Env;

pub use events::{
    ChunkInput, Failure, ReportInput, ReportOutput, RunInput, Started, Traced, TriggerOutput,
    ValidateOutput,
};

/// The diagnostic Step Functions sees: `errorType` is what Retry and Catch match on.
impl From<ChuteError> for Diagnostic {
    fn from(e: ChuteError) -> Diagnostic {
        let message = match &e {
            // File errors travel as JSON so the report can show the code and message apart.
            ChuteError::InvalidFile(f) => {
                serde_json::to_string(f).unwrap_or_else(|_| f.message.clone())
            }
            other => crate::error::redact(&other.to_string()),
        };
        tracing::error!(error_type = e.error_type(), error = %message, "step failed");
        Diagnostic {
            error_type: e.error_type().to_string(),
            error_message: message,
        }
    }
}

/// Runs a handler as the Lambda `step`, with the clients built once, and every log line of an
/// invocation in a span naming its step, run and chunk (the binaries call this).
pub async fn serve<In, Out, F, Fut>(
    step: &'static str,
    handler: F,
) -> Result<(), lambda_runtime::Error>
where
    In: serde::de::DeserializeOwned + Traced + Send + 'static,
    Out: Serialize + Send + 'static,
    F: Fn(&'static Env, lambda_runtime::LambdaEvent<In>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Out, Diagnostic>> + Send + 'static,
{
    lambda_runtime::tracing::init_default_subscriber();
    let env: &'static Env = Box::leak(Box::new(Env::load().await.map_err(|e| e.to_string())?));
    // Boxing keeps the handler's future type out of `main`'s (deep async types overflow rustc).
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<In>| -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Out, Diagnostic>> + Send>,
        > {
            // Display, not Debug: a run's log lines are found by the plain `run_id=…`.
            let span = tracing::info_span!(
                "invocation",
                step = %step,
                run_id = tracing::field::Empty,
                chunk = event.payload.chunk()
            );
            if let Some(run_id) = event.payload.run_id() {
                span.record("run_id", tracing::field::display(run_id));
            }
            Box::pin(handler(env, event).instrument(span))
        },
    ))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, StoreConfig};

    #[tokio::test]
    async fn a_password_in_a_bad_mongodb_uri_reaches_neither_the_error_nor_the_diagnostic() {
        for uri in [
            "mongodb://chute:s3cr3t@127.0.0.1:notaport/chute",
            "MONGODB://chute:s3cr3t@127.0.0.1:notaport/chute",
            "MongoDB://chute:s3cr3t@127.0.0.1:27017/chute?w=nonsense",
        ] {
            let err = Store::connect(&StoreConfig::new(uri, "chute_test"))
                .await
                .err()
                .expect("a bad URI is refused");
            let text = format!("{err} {err:?}");
            assert!(!text.contains("s3cr3t"), "{text}");
            let diagnostic = Diagnostic::from(err);
            assert_eq!(diagnostic.error_type, crate::error::FATAL);
            assert!(
                !diagnostic.error_message.contains("s3cr3t"),
                "{}",
                diagnostic.error_message
            );
        }
    }
}
