//! The counts of the two chunk steps. Each is one type, flattened into every record that carries
//! it, so its fields keep their place in the JSON the state machine and the report read.

use std::ops::AddAssign;

use serde::{Deserialize, Serialize};

use crate::transform::ChunkOutcome;

/// Declares a counts type and its field-by-field `AddAssign`: a counter is one field, whatever adds
/// counts up (chunks into a run, invocations into a chunk) adds it too.
macro_rules! counts {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$field_meta:meta])* pub $field:ident: u64,)* }) => {
        $(#[$meta])*
        pub struct $name {
            $($(#[$field_meta])* pub $field: u64,)*
        }

        impl AddAssign for $name {
            fn add_assign(&mut self, other: $name) {
                $(self.$field += other.$field;)*
            }
        }
    };
}

counts! {
    /// What writing staged documents did. `inserted + updated + unchanged + refused` equals the
    /// documents handed in; `reactivated` and `merged` count documents already in `updated` or
    /// `unchanged` once more, by what else happened to them. A dry run counts what a real write would.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct WriteCounts {
        pub inserted: u64,
        pub updated: u64,
        pub unchanged: u64,
        /// Documents the database (or the writer, on a `match_also` conflict) refused; the refusals
        /// themselves travel beside the counts.
        pub refused: u64,
        /// Products a full refresh had marked stale (`active: false`) that this file supplied again.
        #[serde(default)]
        pub reactivated: u64,
        /// Rows with a new key written into an existing product found by a `match_also` field.
        #[serde(default)]
        pub merged: u64,
    }
}

impl WriteCounts {
    /// The documents these counts account for: each is inserted, updated, unchanged or refused.
    pub fn accounted(&self) -> u64 {
        self.inserted + self.updated + self.unchanged + self.refused
    }
}

counts! {
    /// What the snapshot said of a chunk's staged documents (`new + changed + unchanged` are the
    /// documents diffed; `unchanged` ones never reach the database) and the database commands the
    /// import sent. All zero when delta is off but `commands`.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct DeltaCounts {
        pub new: u64,
        pub changed: u64,
        pub unchanged: u64,
        pub commands: u64,
    }
}

counts! {
    /// What transforming rows did: `rows = valid + duplicate + rejected + skipped`; `valid` rows
    /// became staged documents.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
    pub struct TransformCounts {
        pub rows: u64,
        pub valid: u64,
        /// Rows superseded by a later valid occurrence of their key.
        pub duplicate: u64,
        pub rejected: u64,
        /// Continuation rows the schema declares (counted, never imported); written only when
        /// non-zero, so records keep their shape.
        #[serde(default, skip_serializing_if = "is_zero")]
        pub skipped: u64,
    }
}

impl From<&ChunkOutcome> for TransformCounts {
    fn from(chunk: &ChunkOutcome) -> TransformCounts {
        TransformCounts {
            rows: chunk.rows,
            valid: chunk.valid,
            duplicate: chunk.duplicate,
            rejected: chunk.rejected.len() as u64,
            skipped: chunk.skipped,
        }
    }
}

/// For counts serialised only when non-zero.
pub fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Field differences a dry run quotes (old → new of documents it would update), per chunk and
/// per report.
pub const DIFFERENCE_SAMPLE: usize = 20;

/// One field of a document a dry run would update, as the import records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    /// The product's key, composite keys joined with `/`.
    pub key: String,
    /// Dotted field path.
    pub field: String,
    /// Stored value as relaxed Extended JSON text; `None` when the document lacks the field.
    pub old: Option<String>,
    pub new: Option<String>,
}

/// Adds `more` to a sample of differences while it holds fewer than [`DIFFERENCE_SAMPLE`].
pub fn keep_sample<'a>(
    sample: &mut Vec<Difference>,
    more: impl IntoIterator<Item = &'a Difference>,
) {
    let room = DIFFERENCE_SAMPLE.saturating_sub(sample.len());
    sample.extend(more.into_iter().take(room).cloned());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_field_by_field() {
        let mut total = WriteCounts {
            inserted: 1,
            refused: 2,
            ..WriteCounts::default()
        };
        total += WriteCounts {
            inserted: 1,
            updated: 3,
            unchanged: 4,
            refused: 1,
            reactivated: 2,
            merged: 1,
        };
        assert_eq!(
            total,
            WriteCounts {
                inserted: 2,
                updated: 3,
                unchanged: 4,
                refused: 3,
                reactivated: 2,
                merged: 1,
            }
        );
        assert_eq!(total.accounted(), 12);
        let mut rows = TransformCounts {
            rows: 3,
            valid: 2,
            duplicate: 0,
            rejected: 0,
            skipped: 1,
        };
        rows += rows;
        assert_eq!((rows.rows, rows.valid, rows.skipped), (6, 4, 2));
    }

    #[test]
    fn a_sample_stops_growing_at_its_size() {
        let one = Difference {
            key: "A".into(),
            field: "price".into(),
            old: None,
            new: Some("1".into()),
        };
        let mut sample = Vec::new();
        keep_sample(&mut sample, &vec![one.clone(); 15]);
        keep_sample(&mut sample, &vec![one; 15]);
        assert_eq!(sample.len(), DIFFERENCE_SAMPLE);
    }
}
