//! Stale marking of a delta run: the stale keys come from the snapshots ([`crate::delta`]), so
//! the database is asked only about them (by key, in batches, on the key index) instead of
//! scanning the source's claims for run ids a delta run never restamps. Tags, guards, policies and
//! the redrive count are [`super::stale`]'s.

use std::collections::HashSet;

use bson::{doc, DateTime, Document};
use tokio::sync::mpsc::Sender;

use super::classify::classify;
use super::filters::keys_filter;
use super::paths::{key_text, lookup};
use super::stale::{key_values, refusal, send, tag_statement};
use super::{StaleMarked, StaleRun, Store};
use crate::error::ChuteError;
use crate::feed::{check_source_name, Stale};
use crate::schema::KEY_SEPARATOR;

/// Keys asked for per `find`.
const KEYS_PER_FIND: usize = 500;

/// `stale` counted and sent to `keys` without touching the database: as candidates when the
/// guard refuses to mark them, else as marked. What a refused or `keep` marking reports, and what
/// a dry run predicts from the snapshots.
pub async fn list_stale(
    run: &StaleRun<'_>,
    stale: &[String],
    supplied: u64,
    keys: Sender<Vec<String>>,
) -> Result<StaleMarked, ChuteError> {
    let count = stale.len() as u64;
    let mut marked = StaleMarked {
        supplied,
        refused_reason: refusal(run, count, supplied, count),
        sample: stale.iter().take(super::STALE_SAMPLE).cloned().collect(),
        ..StaleMarked::default()
    };
    if marked.refused_reason.is_some() {
        marked.candidates = count;
    } else {
        marked.marked = count;
    }
    for batch in stale.chunks(super::DEFAULT_BATCH) {
        send(&keys, batch.to_vec()).await?;
    }
    Ok(marked)
}

impl Store {
    /// Marks `stale` (keys the source's snapshot has and this full refresh does not list) under
    /// `run.policy`, `supplied` being the snapshot's size (for `max_stale_percent`). Every stale
    /// key goes to `keys` for the CSV, marked or not. A redrive finds the claims it tagged and
    /// counts them again.
    pub async fn mark_stale_keys(
        &self,
        run: &StaleRun<'_>,
        stale: &[String],
        supplied: u64,
        keys: Sender<Vec<String>>,
    ) -> Result<StaleMarked, ChuteError> {
        check_source_name(run.feed_source).map_err(ChuteError::Config)?;
        let count = stale.len() as u64;
        if refusal(run, count, supplied, count).is_some() || run.policy == Stale::Keep {
            return list_stale(run, stale, supplied, keys).await;
        }
        let mut marked = StaleMarked {
            supplied,
            ..StaleMarked::default()
        };
        if stale.is_empty() {
            return Ok(marked);
        }
        self.ensure_stale_indexes(run.schema, run.feed_source)
            .await?;
        let claim = format!("_sources.{}", run.feed_source);
        for batch in stale.chunks(KEYS_PER_FIND) {
            self.tag_keys(run, &claim, batch).await?;
        }
        self.list_tagged(run, &keys, &mut marked).await?;
        Ok(marked)
    }

    /// Tags the claims of the products with keys `batch` that still carry a run id (one `find` on
    /// the key index, one `update` by `_id`).
    async fn tag_keys(
        &self,
        run: &StaleRun<'_>,
        claim: &str,
        batch: &[String],
    ) -> Result<(), ChuteError> {
        let fields = run.schema.key_fields();
        let wanted: HashSet<&str> = batch.iter().map(String::as_str).collect();
        let values: Vec<_> = batch
            .iter()
            .map(|key| {
                let cells: Vec<String> = key.split(KEY_SEPARATOR).map(str::to_string).collect();
                key_values(run.schema, &cells)
            })
            .collect();
        let mut projection = doc! {"_id": 1, "_sources": 1};
        for field in &fields {
            projection.insert(*field, 1);
        }
        let mut cursor = self
            .db
            .collection::<Document>(&run.schema.collection)
            .find(keys_filter(&fields, &values))
            .projection(projection)
            .await
            .map_err(classify)?;
        let run_field = format!("{claim}.run_id");
        let now = DateTime::now();
        let mut statements = Vec::new();
        while cursor.advance().await.map_err(classify)? {
            let product: Document = cursor.deserialize_current().map_err(classify)?;
            let claimed = lookup(&product, &run_field).is_some();
            if claimed && wanted.contains(key_text(&product, &fields).as_str()) {
                statements.push(tag_statement(run, claim, &product, now));
            }
        }
        if !statements.is_empty() {
            self.run_write(
                doc! {"update": &run.schema.collection, "updates": statements, "ordered": false},
            )
            .await?;
        }
        Ok(())
    }
}
