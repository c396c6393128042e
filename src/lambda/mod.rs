//! Lambda glue: configuration from the environment, clients built once per container, the events
//! passed between states, error mapping to stable `errorType`s, and metrics as EMF log lines.
//!
//! One module per function holds its handler; `functions/<name>/src/main.rs` only wires it up.

pub mod import;
pub mod report;
pub mod transform;
pub mod trigger;
pub mod validate;

use std::path::PathBuf;
use std::time::Duration;

use lambda_runtime::Diagnostic;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::blob::Blob;
use crate::error::ChuteError;
use crate::notify::Mailer;
use crate::plan::PlanOptions;
use crate::records::ChunkPlan;
use crate::routing::Routing;
use crate::schema::Schema;
use crate::store::{Store, StoreConfig};

/// Settings, all from environment variables (the SAM template sets them; defaults suit local runs).
#[derive(Debug, Clone)]
pub struct Config {
    /// Only keys under this prefix start runs (`CHUTE_INCOMING_PREFIX`, default `incoming/`).
    pub incoming_prefix: String,
    /// Where staged chunks go (`CHUTE_STAGING_PREFIX`, default `staging/`).
    pub staging_prefix: String,
    /// Where reports go (`CHUTE_REPORTS_PREFIX`, default `reports/`).
    pub reports_prefix: String,
    pub state_machine_arn: Option<String>,
    /// `CHUTE_SCHEMA` (default `products`), looked up in `CHUTE_SCHEMA_DIR` (default `schemas`).
    pub default_schema: String,
    pub schema_dir: PathBuf,
    /// `CHUTE_CHUNK_BYTES`, `CHUTE_MAX_FILE_BYTES`, `CHUTE_MAX_RECORD_BYTES`, `CHUTE_MAX_COLUMNS`.
    pub plan: PlanOptions,
    /// `CHUTE_DATABASE`, default `chute`.
    pub database: String,
    /// `CHUTE_MONGODB_URI` (local) or `CHUTE_MONGODB_SECRET_ARN` (AWS: the secret's string is the URI,
    /// or JSON with a `uri` field).
    pub mongodb_uri: Option<String>,
    pub mongodb_secret_arn: Option<String>,
    /// `CHUTE_EMAIL_FROM`: the verified SES identity; no sender, no email.
    pub email_from: Option<String>,
    /// `CHUTE_EMAIL_DEFAULT`, `CHUTE_EMAIL_SUCCESS`, `CHUTE_EMAIL_FAILURE` (comma-separated) and
    /// `CHUTE_EMAIL_TEAMS` (`team=a@x,b@x;other=c@x`).
    pub routing: Routing,
    /// `CHUTE_EMAIL_ATTEMPTS`: tries for a throttled send (default 4).
    pub email_attempts: u32,
    /// `CHUTE_PRESIGN_SECONDS`: lifetime of artifact links in the email; 0 names S3 keys instead.
    pub presign_seconds: u64,
    /// `CHUTE_MAP_CONCURRENCY` (default 10) and `CHUTE_TOLERATED_FAILURE_PERCENT` (default 0).
    pub map_concurrency: u32,
    pub tolerated_failure_percent: u32,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, ChuteError> {
    match var(name) {
        Some(v) => v
            .parse()
            .map_err(|_| ChuteError::Config(format!("{name}={v} is not a number"))),
        None => Ok(default),
    }
}

fn list(name: &str) -> Vec<String> {
    var(name).map(|v| split_addresses(&v)).unwrap_or_default()
}

fn split_addresses(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect()
}

impl Config {
    pub fn from_env() -> Result<Config, ChuteError> {
        let defaults = PlanOptions::default();
        let mut teams = std::collections::BTreeMap::new();
        for entry in var("CHUTE_EMAIL_TEAMS")
            .unwrap_or_default()
            .split(';')
            .filter(|e| !e.trim().is_empty())
        {
            let (team, addresses) = entry.split_once('=').ok_or_else(|| {
                ChuteError::Config(format!(
                    "CHUTE_EMAIL_TEAMS entry `{entry}` is not team=address,address"
                ))
            })?;
            teams.insert(team.trim().to_string(), split_addresses(addresses));
        }
        Ok(Config {
            incoming_prefix: var("CHUTE_INCOMING_PREFIX").unwrap_or_else(|| "incoming/".into()),
            staging_prefix: var("CHUTE_STAGING_PREFIX").unwrap_or_else(|| "staging/".into()),
            reports_prefix: var("CHUTE_REPORTS_PREFIX").unwrap_or_else(|| "reports/".into()),
            state_machine_arn: var("CHUTE_STATE_MACHINE_ARN"),
            default_schema: var("CHUTE_SCHEMA").unwrap_or_else(|| "products".into()),
            schema_dir: var("CHUTE_SCHEMA_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("schemas")),
            plan: PlanOptions {
                chunk_bytes: number("CHUTE_CHUNK_BYTES", defaults.chunk_bytes)?.max(1),
                max_file_bytes: number("CHUTE_MAX_FILE_BYTES", defaults.max_file_bytes)?,
                max_record_bytes: number("CHUTE_MAX_RECORD_BYTES", defaults.max_record_bytes)?,
                max_columns: number("CHUTE_MAX_COLUMNS", defaults.max_columns)?,
            },
            database: var("CHUTE_DATABASE").unwrap_or_else(|| "chute".into()),
            mongodb_uri: var("CHUTE_MONGODB_URI"),
            mongodb_secret_arn: var("CHUTE_MONGODB_SECRET_ARN"),
            email_from: var("CHUTE_EMAIL_FROM"),
            routing: Routing {
                default: list("CHUTE_EMAIL_DEFAULT"),
                success: list("CHUTE_EMAIL_SUCCESS"),
                failure: list("CHUTE_EMAIL_FAILURE"),
                teams,
            },
            email_attempts: number("CHUTE_EMAIL_ATTEMPTS", 4)?,
            presign_seconds: number("CHUTE_PRESIGN_SECONDS", 0)?,
            map_concurrency: number("CHUTE_MAP_CONCURRENCY", 10)?,
            tolerated_failure_percent: number("CHUTE_TOLERATED_FAILURE_PERCENT", 0)?,
        })
    }

    pub fn schema(&self, name: &str) -> Result<Schema, ChuteError> {
        Ok(Schema::load(&self.schema_dir, name)?)
    }

    pub fn staging_key(&self, run_id: &str, name: &str) -> String {
        format!("{}{run_id}/{name}", self.staging_prefix)
    }

    pub fn report_key(&self, run_id: &str, name: &str) -> String {
        format!("{}{run_id}/{name}", self.reports_prefix)
    }
}

/// Clients and settings shared by every invocation of a container.
pub struct Env {
    pub config: Config,
    pub blob: Blob,
    pub sfn: aws_sdk_sfn::Client,
    pub mailer: Mailer,
    secrets: aws_sdk_secretsmanager::Client,
    store: OnceCell<Store>,
}

impl Env {
    /// Reads the configuration and builds the AWS clients; MongoDB connects on first use.
    pub async fn load() -> Result<Env, ChuteError> {
        let config = Config::from_env()?;
        let sdk = crate::aws::sdk_config().await;
        Ok(Env {
            blob: Blob::new(&sdk),
            sfn: aws_sdk_sfn::Client::new(&sdk),
            mailer: Mailer::new(&sdk),
            secrets: aws_sdk_secretsmanager::Client::new(&sdk),
            store: OnceCell::new(),
            config,
        })
    }

    /// The MongoDB store, connected once per container; the URI is read from the environment or
    /// Secrets Manager and never logged.
    pub async fn store(&self) -> Result<&Store, ChuteError> {
        self.store
            .get_or_try_init(|| async {
                let uri = match (&self.config.mongodb_uri, &self.config.mongodb_secret_arn) {
                    (Some(uri), _) => uri.clone(),
                    (None, Some(arn)) => self.secret_uri(arn).await?,
                    (None, None) => {
                        return Err(ChuteError::Config(
                            "set CHUTE_MONGODB_URI or CHUTE_MONGODB_SECRET_ARN".into(),
                        ));
                    }
                };
                let mut store_config = StoreConfig::new(uri, &self.config.database);
                store_config.server_selection_timeout =
                    Duration::from_secs(number("CHUTE_MONGODB_TIMEOUT_SECONDS", 20)?);
                Store::connect(&store_config).await
            })
            .await
    }

    async fn secret_uri(&self, arn: &str) -> Result<String, ChuteError> {
        let out = self
            .secrets
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .map_err(|e| crate::aws::classify("Secrets Manager", e))?;
        let text = out.secret_string().unwrap_or_default();
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
}

/// Maps an error to the diagnostic Step Functions sees (`errorType` is matched by Retry/Catch).
pub fn diagnostic(e: ChuteError) -> Diagnostic {
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

/// The execution input `trigger` starts a run with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInput {
    pub run_id: String,
    pub bucket: String,
    pub key: String,
    pub etag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    pub schema: String,
    /// Overrides the configured chunk size for this file (object metadata `chute-chunk-bytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_bytes: Option<u64>,
    /// When the object event was handled (RFC 3339).
    pub requested_at: String,
    /// Chunks processed at once (the Map's `MaxConcurrencyPath`).
    pub map_concurrency: u32,
    /// Share of chunks that may fail before the Map fails (`ToleratedFailurePercentagePath`).
    pub tolerated_failure_percent: u32,
}

/// What `validate` returns (the state's `$.plan`): small, whatever the file size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanOutput {
    pub rows: u64,
    pub file_bytes: u64,
    pub chunk_count: u64,
    pub chunks: Vec<ChunkPlan>,
    pub plan_key: String,
    pub warnings: Vec<String>,
    pub duplicate_keys: u64,
    pub superseded_rows: u64,
    pub duration_ms: u64,
}

/// The plan details chunks need, stored in S3 (`staging/<run>/plan.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPlan {
    pub header: Vec<String>,
    pub chunks: Vec<ChunkPlan>,
    /// Rows superseded by a later valid occurrence of their key (sorted).
    pub superseded: Vec<u64>,
    pub warnings: Vec<String>,
}

/// One Map item: the run plus one chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkInput {
    pub run_id: String,
    pub bucket: String,
    pub key: String,
    pub etag: String,
    pub schema: String,
    pub plan_key: String,
    pub chunk: ChunkPlan,
}

/// What `transform` returns and stores (`staging/<run>/chunk-<i>.transform.json`, with the rejected
/// rows; the returned copy leaves them out to stay small).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransformOutput {
    pub run_id: String,
    pub bucket: String,
    pub key: String,
    pub schema: String,
    pub chunk: u32,
    pub rows: u64,
    pub valid: u64,
    pub duplicate: u64,
    pub rejected: u64,
    pub staged_key: String,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected_rows: Vec<crate::transform::RejectedRow>,
}

/// What `import` returns and stores (`staging/<run>/chunk-<i>.import.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportOutput {
    pub run_id: String,
    pub chunk: u32,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub refused: u64,
    pub duration_ms: u64,
    /// True when the ledger showed the chunk done and nothing was written.
    pub replayed: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refusals: Vec<crate::error::Refusal>,
}

/// A caught failure as Step Functions passes it (`{"Error", "Cause"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    #[serde(rename = "Error")]
    pub error: String,
    #[serde(rename = "Cause", default)]
    pub cause: String,
}

/// The `report` input: the whole execution state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportInput {
    #[serde(flatten)]
    pub run: RunInput,
    #[serde(default)]
    pub plan: Option<PlanOutput>,
    #[serde(default)]
    pub failure: Option<Failure>,
}

/// Writes CloudWatch metrics as one Embedded Metric Format line: no API call, no latency.
pub fn emit_metrics(step: &str, run_id: &str, metrics: &[(&str, f64, &str)]) {
    let mut line = serde_json::Map::new();
    let definitions: Vec<serde_json::Value> = metrics
        .iter()
        .map(|(name, _, unit)| serde_json::json!({"Name": name, "Unit": unit}))
        .collect();
    line.insert(
        "_aws".into(),
        serde_json::json!({
            "Timestamp": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
            "CloudWatchMetrics": [{"Namespace": "chute", "Dimensions": [["Step"]], "Metrics": definitions}]
        }),
    );
    line.insert("Step".into(), step.into());
    line.insert("run_id".into(), run_id.into());
    for (name, value, _) in metrics {
        line.insert((*name).into(), serde_json::json!(value));
    }
    println!("{}", serde_json::Value::Object(line));
}

/// RFC 3339 "now" for reports and ledgers.
pub fn now_rfc3339() -> String {
    bson::DateTime::now()
        .try_to_rfc3339_string()
        .unwrap_or_default()
}

/// Milliseconds since `start`.
pub fn elapsed_ms(start: std::time::Instant) -> u64 {
    start.elapsed().as_millis() as u64
}

/// Runs a handler function as a Lambda with the clients built once (the binaries call this).
pub async fn serve<In, Out, F, Fut>(handler: F) -> Result<(), lambda_runtime::Error>
where
    In: serde::de::DeserializeOwned + Send + 'static,
    Out: Serialize + Send + 'static,
    F: Fn(&'static Env, lambda_runtime::LambdaEvent<In>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Out, Diagnostic>> + Send + 'static,
{
    lambda_runtime::tracing::init_default_subscriber();
    let env: &'static Env = Box::leak(Box::new(Env::load().await.map_err(|e| e.to_string())?));
    // Boxing keeps the handler's future type out of `main`'s (deep async types overflow rustc).
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event| -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Out, Diagnostic>> + Send>,
        > { Box::pin(handler(env, event)) },
    ))
    .await
}
