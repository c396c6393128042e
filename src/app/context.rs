//! What a container builds once and every invocation shares: the configuration and the clients.

use tokio::sync::OnceCell;

use crate::blob::Blob;
use crate::error::ChuteError;
use crate::notify::events::DefaultBus;
use crate::notify::Mailer;
use crate::secrets::Secrets;
use crate::settings::Config;
use crate::store::{Store, StoreConfig};
use crate::workflow::Workflow;

/// Clients and settings shared by every invocation of a container.
pub struct Env {
    pub config: Config,
    pub blob: Blob,
    pub workflow: Workflow,
    pub mailer: Mailer,
    secrets: Secrets,
    pub events: DefaultBus,
    store: OnceCell<Store>,
}

impl Env {
    /// Reads the configuration and builds the AWS clients; MongoDB connects on first use.
    pub async fn load() -> Result<Env, ChuteError> {
        let config = Config::from_env()?;
        let sdk = crate::aws::sdk_config().await;
        Ok(Env {
            blob: Blob::new(&sdk, config.s3_path_style),
            workflow: Workflow::new(&sdk),
            mailer: Mailer::new(&sdk, config.ses_configuration_set.clone()),
            secrets: Secrets::new(&sdk),
            events: DefaultBus::new(&sdk),
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
                    (None, Some(arn)) => self.secrets.mongodb_uri(arn).await?,
                    (None, None) => {
                        return Err(ChuteError::Config(
                            "set CHUTE_MONGODB_URI or CHUTE_MONGODB_SECRET_ARN".into(),
                        ));
                    }
                };
                let mut store_config = StoreConfig::new(uri, &self.config.database);
                store_config.server_selection_timeout = self.config.mongodb_timeout;
                Store::connect(&store_config).await
            })
            .await
    }

    /// Uses `store` instead of connecting from the configuration (tests observe the commands a
    /// handler sends with a store of their own); false when a store is already in use.
    pub fn use_store(&self, store: Store) -> bool {
        self.store.set(store).is_ok()
    }
}
