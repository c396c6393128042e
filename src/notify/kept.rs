//! For the adapters' tests: an interceptor that keeps a signed request's body and stops it before it
//! leaves. moto accepts and ignores fields (SES's `ConfigurationSetName`), so the request itself is
//! what a local test can check. One type for every SDK client: they share the interceptor trait.

use std::sync::{Arc, Mutex};

use aws_sdk_sesv2::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_sesv2::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_sesv2::error::BoxError;

#[derive(Debug, Clone, Default)]
pub(super) struct KeepBody(Arc<Mutex<Option<String>>>);

impl KeepBody {
    /// The kept body as JSON; panics when no request was built.
    pub(super) fn json(&self) -> serde_json::Value {
        let body = self
            .0
            .lock()
            .unwrap()
            .clone()
            .expect("the request was built");
        serde_json::from_str(&body).unwrap()
    }
}

impl Intercept for KeepBody {
    fn name(&self) -> &'static str {
        "KeepBody"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let body = context.request().body().bytes().unwrap_or_default();
        *self.0.lock().unwrap() = Some(String::from_utf8_lossy(body).into_owned());
        Err("kept, not sent".into())
    }
}
