//! Where a source's snapshot stands, and who may write it. The pieces live in S3
//! ([`crate::delta`]); which run's pieces are current is one document per collection and source
//! in [`SNAPSHOTS`], switched by a compare-and-set on the run it replaces, so a snapshot becomes
//! current whole or not at all. A run of a source holds that source's lease ([`LEASES`]) from
//! validate to its report: two runs of one source never interleave (the second waits, then is
//! refused with the holder's name).

use bson::{doc, DateTime, Document};
use serde::{Deserialize, Serialize};

use super::classify::classify;
use super::Store;
use crate::delta::SnapshotBase;
use crate::error::ChuteError;

/// One document per `<collection>/<source>`: the current snapshot and the one before it.
pub const SNAPSHOTS: &str = "chute_snapshots";
/// One document per `<collection>/<source>` while a run of that source is under way.
pub const LEASES: &str = "chute_leases";

/// A source's snapshot record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "_id")]
    pub id: String,
    pub current: SnapshotBase,
    /// The snapshot `current` replaced: its pieces are deleted when the next one replaces it, so
    /// a dry run reading them while this one was committed still finds them.
    #[serde(default)]
    pub previous: Option<SnapshotBase>,
    pub committed_at: DateTime,
}

/// Who holds a source's lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    #[serde(rename = "_id")]
    pub id: String,
    pub run_id: String,
    pub since: DateTime,
    /// A run that never reported (its report step failed for good) frees the source then.
    pub expires: DateTime,
}

/// The record id of `source`'s snapshot and lease in `collection`.
pub fn snapshot_id(collection: &str, source: &str) -> String {
    format!("{collection}/{source}")
}

/// What [`Store::switch_snapshot`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Switched {
    /// The new snapshot is current; the one before the one it replaced (if any) may be deleted.
    Committed { retired: Option<SnapshotBase> },
    /// It was already (a retried report).
    Already,
    /// Another run's snapshot is current, not the one this run diffed against: nothing changed.
    Conflict { current: Option<String> },
}

impl Store {
    /// The current snapshot of `source` in `collection`, if one was committed.
    pub async fn snapshot(
        &self,
        collection: &str,
        source: &str,
    ) -> Result<Option<Manifest>, ChuteError> {
        let found = self
            .db
            .collection::<Document>(SNAPSHOTS)
            .find_one(doc! {"_id": snapshot_id(collection, source)})
            .await
            .map_err(classify)?;
        found
            .map(|d| {
                bson::from_document(d).map_err(|e| ChuteError::Unreadable {
                    what: format!("the snapshot record of {collection}/{source}"),
                    source: e.into(),
                })
            })
            .transpose()
    }

    /// Makes `next` the current snapshot if `based_on` (the run whose snapshot this run diffed
    /// against, or none) still is.
    pub async fn switch_snapshot(
        &self,
        collection: &str,
        source: &str,
        based_on: Option<&str>,
        next: &SnapshotBase,
    ) -> Result<Switched, ChuteError> {
        let id = snapshot_id(collection, source);
        let records = self.db.collection::<Document>(SNAPSHOTS);
        let stored = self.snapshot(collection, source).await?;
        let current = stored.as_ref().map(|m| m.current.run_id.clone());
        if current.as_deref() == Some(next.run_id.as_str()) {
            return Ok(Switched::Already);
        }
        let to_doc = |base: &SnapshotBase| {
            bson::to_document(base).map_err(|e| ChuteError::Unwritable {
                what: "a snapshot record".into(),
                source: e.into(),
            })
        };
        let conflict = Switched::Conflict {
            current: current.clone(),
        };
        match (stored, based_on) {
            (None, _) => {
                let inserted = records
                    .insert_one(doc! {"_id": &id, "current": to_doc(next)?,
                    "previous": null, "committed_at": DateTime::now()})
                    .await;
                match inserted {
                    Ok(_) => Ok(Switched::Committed { retired: None }),
                    Err(e) if is_duplicate(&e) => Ok(conflict),
                    Err(e) => Err(classify(e)),
                }
            }
            (Some(manifest), based_on) => {
                // A run that took the full path replaces whatever is current (it wrote every
                // row); one that diffed replaces only the snapshot it diffed against.
                if based_on.is_some_and(|b| b != manifest.current.run_id) {
                    return Ok(conflict);
                }
                let replaced = manifest.current.run_id.clone();
                let result = records
                    .update_one(
                        doc! {"_id": &id, "current.run_id": &replaced},
                        doc! {"$set": {"current": to_doc(next)?,
                        "previous": to_doc(&manifest.current)?, "committed_at": DateTime::now()}},
                    )
                    .await
                    .map_err(classify)?;
                Ok(if result.modified_count == 1 {
                    Switched::Committed {
                        retired: manifest.previous,
                    }
                } else {
                    conflict
                })
            }
        }
    }

    /// Takes `source`'s lease in `collection` for `run_id` until `expires`; returns the holder
    /// instead when another unexpired run holds it. Taking it again for the same run (a retried
    /// validate) succeeds.
    pub async fn take_lease(
        &self,
        collection: &str,
        source: &str,
        run_id: &str,
        expires: DateTime,
    ) -> Result<Result<(), Lease>, ChuteError> {
        let id = snapshot_id(collection, source);
        let leases = self.db.collection::<Document>(LEASES);
        let now = DateTime::now();
        let mine = doc! {"_id": &id, "run_id": run_id, "since": now, "expires": expires};
        match leases.insert_one(mine.clone()).await {
            Ok(_) => return Ok(Ok(())),
            Err(e) if is_duplicate(&e) => {}
            Err(e) => return Err(classify(e)),
        }
        let Some(held) = leases.find_one(doc! {"_id": &id}).await.map_err(classify)? else {
            // Released in between: try once more next time round (the state machine retries).
            return Err(ChuteError::Transient(format!(
                "the lease of {id} changed hands while it was taken"
            )));
        };
        let holder: Lease = bson::from_document(held).map_err(|e| ChuteError::Unreadable {
            what: format!("the lease of {id}"),
            source: e.into(),
        })?;
        if holder.run_id == run_id {
            return Ok(Ok(()));
        }
        if holder.expires > now {
            return Ok(Err(holder));
        }
        let taken = leases
            .update_one(
                doc! {"_id": &id, "run_id": &holder.run_id},
                doc! {"$set": {"run_id": run_id, "since": now, "expires": expires}},
            )
            .await
            .map_err(classify)?;
        Ok(if taken.modified_count == 1 {
            tracing::warn!(expired = %holder.run_id, "took over an expired lease");
            Ok(())
        } else {
            Err(holder)
        })
    }

    /// Moves the expiry of `source`'s lease to `expires` if `run_id` still holds it; returns
    /// whether it does. Every step of a run renews it, so a run that died without its report frees
    /// the source one lease period after its last step.
    pub async fn renew_lease(
        &self,
        collection: &str,
        source: &str,
        run_id: &str,
        expires: DateTime,
    ) -> Result<bool, ChuteError> {
        let renewed = self
            .db
            .collection::<Document>(LEASES)
            .update_one(
                doc! {"_id": snapshot_id(collection, source), "run_id": run_id},
                doc! {"$set": {"expires": expires}},
            )
            .await
            .map_err(classify)?;
        Ok(renewed.matched_count == 1)
    }

    /// Gives `source`'s lease back if `run_id` holds it (a run that never took it releases
    /// nothing).
    pub async fn release_lease(
        &self,
        collection: &str,
        source: &str,
        run_id: &str,
    ) -> Result<(), ChuteError> {
        self.db
            .collection::<Document>(LEASES)
            .delete_one(doc! {"_id": snapshot_id(collection, source), "run_id": run_id})
            .await
            .map_err(classify)?;
        Ok(())
    }
}

fn is_duplicate(e: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    matches!(e.kind.as_ref(), ErrorKind::Write(WriteFailure::WriteError(w)) if w.code == 11000)
}
