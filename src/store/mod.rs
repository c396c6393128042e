//! The MongoDB writer: collection setup, idempotent batched upserts and the run ledger.
//!
//! Writes use the `update` command through `run_command`, many `{q, u, upsert}` statements per
//! command, unordered. Chosen over `Client::bulk_write` because that needs MongoDB 8.0+ (DocumentDB
//! and older Atlas tiers lack it) and over concurrent `update_one` because one command per batch was
//! 2–10× faster here. The driver does not retry `run_command`; the state machine does, and every
//! statement is idempotent, so a retried batch cannot double-count or duplicate (see
//! [`Store::upsert_staged`]).

mod classify;
mod document;
mod drift;
mod filters;
mod ledger;
mod paths;
mod setup;
mod snapshots;
mod staged;
mod stale;
mod stale_keys;
mod upsert;
mod verify;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bson::doc;
use mongodb::event::{command::CommandEvent, EventHandler};
use mongodb::options::ClientOptions;
use mongodb::{Client, Database};

use crate::error::{redact, ChuteError};
use crate::schema::Schema;

pub use classify::classify;
pub use document::WriteContext;
pub use drift::{ClaimsOnly, Drift, DriftKind, PieceCheck, Repaired, Verified, DRIFT_LISTED};
pub use ledger::{RunStart, RUNS};
pub use setup::json_schema;
pub use snapshots::{snapshot_id, Lease, Manifest, Switched, LEASES, SNAPSHOTS};
pub use staged::{digest_part, split_staged};
pub use stale::{StaleMarked, StaleRun, Supplied, STALE_SAMPLE};
pub use stale_keys::list_stale;
pub use upsert::{WriteOutcome, WriteProgress};
pub use verify::VerifyRequest;

/// Statements per `update` command: large enough to amortise round trips, small enough that one
/// command stays far below the 48 MB message limit with 1 MiB records.
pub const DEFAULT_BATCH: usize = 1000;

/// How long a pooled connection may sit idle before the driver closes it, unless the URI sets
/// `maxIdleTimeMS`.
pub const MAX_IDLE_TIME: Duration = Duration::from_secs(60);

/// A function shown every command event.
pub type CommandWatcher = Arc<dyn Fn(CommandEvent) + Send + Sync>;

/// Where the documents go and how the client behaves.
#[derive(Clone)]
pub struct StoreConfig {
    pub uri: String,
    pub database: String,
    /// How long an operation waits for a usable server before failing as transient.
    pub server_selection_timeout: Duration,
    pub batch_size: usize,
    /// Sees every command the driver sends and its reply (tests observe writes with it).
    pub command_events: Option<CommandWatcher>,
}

impl StoreConfig {
    pub fn new(uri: impl Into<String>, database: impl Into<String>) -> Self {
        StoreConfig {
            uri: uri.into(),
            database: database.into(),
            server_selection_timeout: Duration::from_secs(20),
            batch_size: DEFAULT_BATCH,
            command_events: None,
        }
    }
}

/// Written by hand so a `{:?}` cannot leak the password the URI may carry.
impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("uri", &redact(&self.uri))
            .field("database", &self.database)
            .field("server_selection_timeout", &self.server_selection_timeout)
            .field("batch_size", &self.batch_size)
            .field("command_events", &self.command_events.is_some())
            .finish()
    }
}

/// A MongoDB connection for one container: build it once and share it.
#[derive(Clone)]
pub struct Store {
    client: Client,
    db: Database,
    batch_size: usize,
    /// Commands sent since connecting: a run's database work is a figure like its time.
    commands: Arc<AtomicU64>,
}

impl Store {
    /// Connects lazily (the first operation dials); fails only on a malformed URI.
    pub async fn connect(config: &StoreConfig) -> Result<Store, ChuteError> {
        let commands = Arc::new(AtomicU64::new(0));
        let mut options = client_options(config).await?;
        let counted = commands.clone();
        let forward = config.command_events.clone();
        options.command_event_handler = Some(EventHandler::callback(move |event| {
            if matches!(event, CommandEvent::Started(_)) {
                counted.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(forward) = &forward {
                forward(event);
            }
        }));
        let client = Client::with_options(options).map_err(classify)?;
        let db = client.database(&config.database);
        Ok(Store {
            client,
            db,
            batch_size: config.batch_size.max(1),
            commands,
        })
    }

    /// Commands this store sent so far (the driver's own handshakes and heartbeats excluded).
    pub fn commands(&self) -> u64 {
        self.commands.load(Ordering::Relaxed)
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    pub async fn ping(&self) -> Result<(), ChuteError> {
        self.db
            .run_command(doc! {"ping": 1})
            .await
            .map(|_| ())
            .map_err(classify)
    }

    /// Creates or updates the collection, its `$jsonSchema` validator and indexes; safe to repeat.
    pub async fn ensure_collection(&self, schema: &Schema) -> Result<(), ChuteError> {
        setup::ensure_collection(&self.db, schema).await
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// The driver's options: the URI's, with what a Lambda container needs where the URI is silent.
async fn client_options(config: &StoreConfig) -> Result<ClientOptions, ChuteError> {
    let mut options = ClientOptions::parse(&config.uri).await.map_err(|e| {
        ChuteError::Fatal(format!(
            "MongoDB URI is not usable: {}",
            redact(&e.to_string())
        ))
    })?;
    options.app_name = Some("chute".into());
    options.connect_timeout = Some(Duration::from_secs(5));
    options.server_selection_timeout = Some(config.server_selection_timeout);
    // A Lambda container runs one invocation at a time; a few sockets are plenty.
    options.max_pool_size = Some(4);
    options.min_pool_size = Some(0);
    // A frozen container's idle sockets go stale; MongoDB's "Manage Connections with AWS Lambda"
    // guide (https://www.mongodb.com/docs/atlas/manage-connections-aws-lambda/) recommends
    // maxIdleTimeMS=60000 so the driver closes them instead. A URI's own value wins.
    options.max_idle_time.get_or_insert(MAX_IDLE_TIME);
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        for uri in [
            "mongodb://chute:s3cr3t@db/chute",
            "MongoDB+SRV://chute:s3cr3t@x.net",
        ] {
            let text = format!("{:?}", StoreConfig::new(uri, "chute"));
            assert!(!text.contains("s3cr3t"), "{text}");
            assert!(text.contains("mongodb://<redacted>"), "{text}");
        }
    }

    #[tokio::test]
    async fn idle_connections_close_after_a_minute_unless_the_uri_says_otherwise() {
        let options = client_options(&StoreConfig::new("mongodb://db/chute", "chute"))
            .await
            .unwrap();
        assert_eq!(options.max_idle_time, Some(MAX_IDLE_TIME));
        let options = client_options(&StoreConfig::new(
            "mongodb://db/chute?maxIdleTimeMS=5000",
            "chute",
        ))
        .await
        .unwrap();
        assert_eq!(options.max_idle_time, Some(Duration::from_secs(5)));
    }
}
