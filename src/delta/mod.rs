//! Delta import: a feed's database work proportional to what changed. Pure; the handlers move the
//! bytes (S3) and the manifest (MongoDB, [`crate::store::snapshots`]).
//!
//! - [`entries`]: one `(key, content hash)` per product, sorted by key hash, and its byte form: a
//!   chunk's *digest* (what the transform staged, with rows) and a source's *snapshot* (what it
//!   last supplied, in pieces by key-hash range so each piece fits a Lambda's memory).
//! - [`diff`]: a chunk against the snapshot (the rows the database never sees), the stale keys of a
//!   full refresh, and the next snapshot.
//! - [`plan`]: whether a run diffs at all, decided once by validate and stored in the plan.

pub mod diff;
pub mod entries;
pub mod plan;

pub use diff::{
    diff_chunk, next_snapshot, prune_runs, stale_keys, ChunkDiff, DeltaCounts, NextSnapshot,
};
pub use entries::{decode, encode, key_hash, piece_of, pieces_for, Entry, PIECE_ENTRIES};
pub use plan::{piece_key, DeltaPlan, SnapshotBase};
