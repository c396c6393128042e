//! Every setting a function reads from its environment, read once when the container starts (the
//! SAM template sets them; the defaults suit local runs), and the S3 key layout built from them.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::error::{redact, ChuteError};
use crate::plan::{max_keys_for_memory, PlanOptions};
use crate::routing::Routing;
use crate::run::RunKeys;
use crate::schema::Schema;

/// Settings, all from environment variables.
#[derive(Clone, Serialize)]
pub struct Config {
    /// Only keys under this prefix start runs (`CHUTE_INCOMING_PREFIX`, default `incoming/`).
    pub incoming_prefix: String,
    /// Where staged chunks go (`CHUTE_STAGING_PREFIX`, default `staging/`).
    pub staging_prefix: String,
    /// Where reports go (`CHUTE_REPORTS_PREFIX`, default `reports/`).
    pub reports_prefix: String,
    pub state_machine_arn: Option<String>,
    /// `CHUTE_SCHEMA` (default `products`): the schema of a file without `chute-schema` metadata.
    pub default_schema: String,
    /// `CHUTE_SCHEMA_DIR` (optional): a `NAME.toml` there wins over the built-in schema `NAME`.
    pub schema_dir: Option<PathBuf>,
    /// `CHUTE_CHUNK_BYTES`, `CHUTE_MAX_FILE_BYTES`, `CHUTE_MAX_RECORD_BYTES`, `CHUTE_MAX_COLUMNS`;
    /// the key ceiling follows `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` (none outside Lambda).
    pub plan: PlanOptions,
    /// `CHUTE_DATABASE`, default `chute`.
    pub database: String,
    /// `CHUTE_MONGODB_URI` (local) or `CHUTE_MONGODB_SECRET_ARN` (AWS: the secret's string is the URI,
    /// or JSON with a `uri` field). The URI may carry a password: `Debug` redacts it.
    pub mongodb_uri: Option<String>,
    pub mongodb_secret_arn: Option<String>,
    /// `CHUTE_MONGODB_TIMEOUT_SECONDS` (default 20): how long an operation waits for a usable server.
    pub mongodb_timeout: Duration,
    /// `CHUTE_S3_PATH_STYLE=1`: local S3 stand-ins answer on one host name, so path-style addressing.
    pub s3_path_style: bool,
    /// `CHUTE_EMAIL_FROM`: the verified SES identity; no sender, no email.
    pub email_from: Option<String>,
    /// `CHUTE_EMAIL_DEFAULT`, `CHUTE_EMAIL_SUCCESS`, `CHUTE_EMAIL_FAILURE` (comma-separated) and
    /// `CHUTE_EMAIL_TEAMS` (`team=a@x,b@x;other=c@x`).
    pub routing: Routing,
    /// `CHUTE_SES_CONFIGURATION_SET`: the SES configuration set the emails go through; none if empty.
    pub ses_configuration_set: Option<String>,
    /// `CHUTE_EMAIL_ATTEMPTS`: tries for a throttled send (default 4).
    pub email_attempts: u32,
    /// `CHUTE_PRESIGN_SECONDS`: lifetime of artifact links in the email, at most
    /// [`MAX_PRESIGN_SECONDS`]; 0 names S3 keys instead.
    pub presign_seconds: u64,
    /// `CHUTE_MAP_CONCURRENCY` (default 10) and `CHUTE_TOLERATED_FAILURE_PERCENT` (default 0).
    pub map_concurrency: u32,
    pub tolerated_failure_percent: u32,
    /// `CHUTE_MIN_CHUNK_BYTES` (default 1 MiB): the smallest chunk size `CHUTE_CHUNK_BYTES` or a
    /// file's `chute-chunk-bytes` may ask for; see [`Config::chunk_bytes`]. Local stacks lower it.
    pub min_chunk_bytes: u64,
    /// `CHUTE_IMPORT_BUDGET_MS`: caps the time one import invocation writes for (testing and
    /// tuning); unset, the budget comes from the invocation's deadline only.
    pub import_budget_ms: Option<u64>,
    /// `CHUTE_SNAPSHOT_PREFIX` (default `snapshots/`): where delta import keeps each source's
    /// snapshot pieces, in the bucket of the files ([`crate::delta`]).
    pub snapshot_prefix: String,
    /// `CHUTE_SNAPSHOT_PIECE_ENTRIES` (default [`crate::delta::PIECE_ENTRIES`]): the most products
    /// a snapshot piece holds on average; tests lower it to use several pieces on small feeds.
    pub snapshot_piece_entries: u64,
    /// `CHUTE_LEASE_SECONDS` (default 30 minutes): how long a source's lease outlives the last
    /// step that renewed it (validate, every import invocation, the report), so a run that died
    /// without its report frees its source then. Longer than any one invocation (15 minutes).
    pub lease: Duration,
}

/// The largest chunk size accepted: a chunk is held in the transform's memory.
pub const MAX_CHUNK_BYTES: u64 = 256 * 1024 * 1024;
/// The default of [`Config::min_chunk_bytes`].
pub const MIN_CHUNK_BYTES: u64 = 1024 * 1024;

/// Shows the settings with the MongoDB URI redacted, so a `{:?}` in a log line cannot leak the
/// password.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let settings = serde_json::to_string(self).map_err(|_| std::fmt::Error)?;
        write!(f, "Config {}", redact(&settings))
    }
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

/// Longest link lifetime asked for. A URL presigned with the report role's temporary credentials
/// dies with them (AWS S3 guide, "Sharing objects with presigned URLs"), which can be within the
/// hour; a longer request would only promise more than the link keeps (README "Email links").
pub const MAX_PRESIGN_SECONDS: u64 = 3600;

/// The requested lifetime, clamped to [`MAX_PRESIGN_SECONDS`].
fn presign_seconds(requested: u64) -> u64 {
    if requested > MAX_PRESIGN_SECONDS {
        tracing::warn!(
            requested,
            used = MAX_PRESIGN_SECONDS,
            "CHUTE_PRESIGN_SECONDS is clamped: presigned links die with the role's credentials"
        );
    }
    requested.min(MAX_PRESIGN_SECONDS)
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
            schema_dir: var("CHUTE_SCHEMA_DIR").map(PathBuf::from),
            plan: PlanOptions {
                chunk_bytes: number("CHUTE_CHUNK_BYTES", defaults.chunk_bytes)?.max(1),
                max_file_bytes: number("CHUTE_MAX_FILE_BYTES", defaults.max_file_bytes)?,
                max_record_bytes: number("CHUTE_MAX_RECORD_BYTES", defaults.max_record_bytes)?,
                max_columns: number("CHUTE_MAX_COLUMNS", defaults.max_columns)?,
                max_keys: match var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") {
                    Some(_) => max_keys_for_memory(number("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", 0)?),
                    None => defaults.max_keys,
                },
            },
            database: var("CHUTE_DATABASE").unwrap_or_else(|| "chute".into()),
            mongodb_uri: var("CHUTE_MONGODB_URI"),
            mongodb_secret_arn: var("CHUTE_MONGODB_SECRET_ARN"),
            mongodb_timeout: Duration::from_secs(number("CHUTE_MONGODB_TIMEOUT_SECONDS", 20)?),
            s3_path_style: var("CHUTE_S3_PATH_STYLE").is_some_and(|v| v == "1" || v == "true"),
            email_from: var("CHUTE_EMAIL_FROM"),
            routing: Routing {
                default: list("CHUTE_EMAIL_DEFAULT"),
                success: list("CHUTE_EMAIL_SUCCESS"),
                failure: list("CHUTE_EMAIL_FAILURE"),
                teams,
            },
            ses_configuration_set: var("CHUTE_SES_CONFIGURATION_SET"),
            email_attempts: number("CHUTE_EMAIL_ATTEMPTS", 4)?,
            presign_seconds: presign_seconds(number("CHUTE_PRESIGN_SECONDS", 0)?),
            map_concurrency: number("CHUTE_MAP_CONCURRENCY", 10)?,
            tolerated_failure_percent: number("CHUTE_TOLERATED_FAILURE_PERCENT", 0)?,
            min_chunk_bytes: number("CHUTE_MIN_CHUNK_BYTES", MIN_CHUNK_BYTES)?,
            import_budget_ms: var("CHUTE_IMPORT_BUDGET_MS")
                .map(|_| number("CHUTE_IMPORT_BUDGET_MS", 0))
                .transpose()?,
            snapshot_prefix: var("CHUTE_SNAPSHOT_PREFIX").unwrap_or_else(|| "snapshots/".into()),
            snapshot_piece_entries: number(
                "CHUTE_SNAPSHOT_PIECE_ENTRIES",
                crate::delta::PIECE_ENTRIES,
            )?
            .max(1),
            lease: Duration::from_secs(number("CHUTE_LEASE_SECONDS", 1800)?),
        })
    }

    /// The chunk size a run plans with: the file's request (`chute-chunk-bytes`) or
    /// `CHUTE_CHUNK_BYTES`, clamped to `CHUTE_MIN_CHUNK_BYTES..=256 MiB`.
    pub fn chunk_bytes(&self, requested: Option<u64>) -> u64 {
        let min = self.min_chunk_bytes.clamp(1, MAX_CHUNK_BYTES);
        requested
            .unwrap_or(self.plan.chunk_bytes)
            .clamp(min, MAX_CHUNK_BYTES)
    }

    pub fn schema(&self, name: &str) -> Result<Schema, ChuteError> {
        Ok(match &self.schema_dir {
            Some(dir) => Schema::load(dir, name)?,
            None => Schema::built_in(name)?,
        })
    }

    /// `<snapshot prefix><collection>/<source>/<run>/`: where run `run_id` writes the snapshot it
    /// commits for `source`'s products in `collection`.
    pub fn snapshot_prefix(&self, collection: &str, source: &str, run_id: &str) -> String {
        format!("{}{collection}/{source}/{run_id}/", self.snapshot_prefix)
    }

    /// When a lease taken or renewed now expires.
    pub fn lease_expiry(&self) -> bson::DateTime {
        bson::DateTime::from_millis(
            bson::DateTime::now().timestamp_millis() + self.lease.as_millis() as i64,
        )
    }

    /// The S3 keys of run `run_id`'s objects, under the configured prefixes.
    pub fn keys<'a>(&'a self, run_id: &'a str) -> RunKeys<'a> {
        RunKeys::new(&self.staging_prefix, &self.reports_prefix, run_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_mongodb_password() {
        for uri in [
            "mongodb://chute:s3cr3t@db:27017/chute",
            "MONGODB+SRV://chute:s3cr3t@cluster0.x.net/chute",
            "MongoDB://chute:s3cr3t@db",
        ] {
            let config = Config {
                mongodb_uri: Some(uri.into()),
                ..Config::from_env().unwrap()
            };
            let text = format!("{config:?}");
            assert!(!text.contains("s3cr3t"), "{text}");
            assert!(text.contains("mongodb://<redacted>"), "{text}");
        }
    }

    #[test]
    fn presign_lifetimes_are_clamped_to_an_hour() {
        assert_eq!(presign_seconds(604_800), MAX_PRESIGN_SECONDS);
        assert_eq!(presign_seconds(3601), 3600);
        assert_eq!(presign_seconds(3600), 3600);
        assert_eq!(presign_seconds(900), 900);
        assert_eq!(presign_seconds(0), 0, "0 still means: name the S3 keys");
    }

    #[test]
    fn chunk_sizes_are_clamped_to_the_documented_range() {
        let config = Config {
            min_chunk_bytes: MIN_CHUNK_BYTES,
            ..Config::from_env().unwrap()
        };
        assert_eq!(config.chunk_bytes(Some(64)), MIN_CHUNK_BYTES);
        assert_eq!(config.chunk_bytes(Some(1 << 40)), MAX_CHUNK_BYTES);
        assert_eq!(config.chunk_bytes(Some(5 << 20)), 5 << 20);
        assert_eq!(
            config.chunk_bytes(None),
            config
                .plan
                .chunk_bytes
                .clamp(MIN_CHUNK_BYTES, MAX_CHUNK_BYTES)
        );
        let local = Config {
            min_chunk_bytes: 1,
            ..config.clone()
        };
        assert_eq!(local.chunk_bytes(Some(64)), 64);
        assert_eq!(local.chunk_bytes(Some(0)), 1);
        let silly = Config {
            min_chunk_bytes: u64::MAX,
            ..config
        };
        assert_eq!(silly.chunk_bytes(Some(64)), MAX_CHUNK_BYTES);
    }
}
