//! Whether a run diffs against its source's snapshot, decided once (validate) and stored in the
//! plan, so every step of the run agrees; when it does not, the reason travels to the report
//! ("delta: off — schema changed") and the run takes the full path.

use serde::{Deserialize, Serialize};

/// The committed snapshot a run diffs against: its pieces are
/// `<prefix>piece-<p>-of-<pieces>.bin` in the run's bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotBase {
    /// The run that committed it.
    pub run_id: String,
    /// Where the pieces are: the bucket of the runs' files and artifacts, under `prefix`.
    pub bucket: String,
    pub prefix: String,
    pub pieces: u32,
    pub entries: u64,
    /// The schema fingerprint the documents were hashed under.
    pub fingerprint: String,
    /// The runs whose staged documents hold the entries' rows ([`super::Entry::run`] indexes it).
    #[serde(default)]
    pub runs: Vec<String>,
    /// When a run that took the full path (every row to the database) last committed, in epoch
    /// milliseconds: `reapply_days` counts from it.
    #[serde(default)]
    pub applied_at_ms: i64,
    /// Each piece's size as written: a piece found with another size (truncated, replaced) turns
    /// delta off instead of being trusted.
    #[serde(default)]
    pub piece_bytes: Vec<u64>,
}

impl SnapshotBase {
    /// The S3 key of piece `p`.
    pub fn piece_key(&self, p: u32) -> String {
        piece_key(&self.prefix, p, self.pieces)
    }
}

/// The S3 key of piece `p` of `pieces` under `prefix`.
pub fn piece_key(prefix: &str, p: u32, pieces: u32) -> String {
    format!("{prefix}piece-{p:03}-of-{pieces:03}.bin")
}

/// A run's delta decision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaPlan {
    /// The snapshot the run diffs against, when delta is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<SnapshotBase>,
    /// Why the run takes the full path, when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub off: Option<String>,
    /// The schema fingerprint of this run's documents.
    pub fingerprint: String,
}

impl DeltaPlan {
    /// Decides: the current snapshot (if any) is used unless its fingerprint differs, the file
    /// asks for a full re-apply (`chute-mode: reapply`), or the source's `reapply_days` passed
    /// since the last full apply (`now_ms`, epoch milliseconds).
    pub fn decide(
        fingerprint: &str,
        current: Option<SnapshotBase>,
        reapply: bool,
        reapply_days: Option<u16>,
        now_ms: i64,
    ) -> DeltaPlan {
        let due = |base: &SnapshotBase, days: u16| {
            now_ms - base.applied_at_ms >= i64::from(days) * 86_400_000
        };
        let off = match &current {
            None => Some("no snapshot of this source yet (its first run)".to_string()),
            Some(base) if base.fingerprint != fingerprint => Some(
                "the schema, its feed settings or chute changed since the snapshot".to_string(),
            ),
            Some(_) if reapply => Some("chute-mode: reapply asked for a full re-apply".to_string()),
            Some(base) if reapply_days.is_some_and(|d| due(base, d)) => Some(format!(
                "reapply_days = {}: the last full apply is that old",
                reapply_days.unwrap_or_default()
            )),
            Some(_) => None,
        };
        DeltaPlan {
            base: if off.is_none() { current } else { None },
            off,
            fingerprint: fingerprint.to_string(),
        }
    }

    /// Delta is off for the run: every row goes to the database.
    pub fn off(fingerprint: &str, reason: impl Into<String>) -> DeltaPlan {
        DeltaPlan {
            base: None,
            off: Some(reason.into()),
            fingerprint: fingerprint.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(fingerprint: &str) -> SnapshotBase {
        SnapshotBase {
            run_id: "r1".into(),
            bucket: "b".into(),
            prefix: "snapshots/products/erp/r1/".into(),
            pieces: 2,
            entries: 10,
            fingerprint: fingerprint.into(),
            runs: vec!["r1".into()],
            applied_at_ms: 0,
            piece_bytes: vec![1, 1],
        }
    }

    #[test]
    fn delta_is_on_only_against_a_snapshot_of_the_same_fingerprint() {
        let day = 86_400_000;
        let on = DeltaPlan::decide("f1", Some(base("f1")), false, Some(7), 6 * day);
        assert_eq!((on.base.is_some(), on.off), (true, None));
        for (plan, says) in [
            (DeltaPlan::decide("f1", None, false, None, 0), "first run"),
            (
                DeltaPlan::decide("f2", Some(base("f1")), false, None, 0),
                "changed",
            ),
            (
                DeltaPlan::decide("f1", Some(base("f1")), true, None, 0),
                "reapply",
            ),
            (
                DeltaPlan::decide("f1", Some(base("f1")), false, Some(7), 7 * day),
                "reapply_days = 7",
            ),
        ] {
            assert!(plan.base.is_none());
            assert!(plan.off.unwrap().contains(says));
        }
        assert_eq!(
            base("f").piece_key(1),
            "snapshots/products/erp/r1/piece-001-of-002.bin"
        );
    }
}
