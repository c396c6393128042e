//! Duplicate keys: the last *valid* occurrence of a key wins, even across chunks.
//!
//! The planner only knows which key fingerprints occur more than once. Which occurrence wins depends
//! on which ones are valid, so a second pass looks only at rows carrying those fingerprints, checks
//! them with the same rules as the transform, groups them by their real key (fingerprint collisions
//! cost a look, never a wrong merge), and lists the valid rows that a later valid row supersedes.
//! The transform then counts those rows as `duplicate` instead of writing them, so the final
//! document is the winner's whatever order chunks are written in.

use std::collections::HashMap;

use crate::header::Header;
use crate::plan::{key_fingerprint, FingerprintSet};
use crate::records::{ChunkPlan, ChunkRecords, Fields};
use crate::schema::Schema;
use crate::transform::{recycle, RowRules};

/// Valid occurrences of possibly duplicated keys, gathered chunk by chunk.
#[derive(Debug, Default)]
pub struct Occurrences {
    rows_by_key: HashMap<String, Vec<u64>>,
}

impl Occurrences {
    /// Adds the valid occurrences in one chunk of the rows whose key fingerprint is in `duplicated`.
    pub fn scan_chunk(
        &mut self,
        rules: &RowRules<'_>,
        header: &Header,
        chunk: &ChunkPlan,
        bytes: &[u8],
        duplicated: &FingerprintSet,
    ) {
        let schema: &Schema = rules.schema;
        let key_cells = header.key_cells(schema);
        let mut records = ChunkRecords::new(rules.format.delimiter, chunk, bytes);
        let mut record = csv::StringRecord::new();
        let (mut spare_values, mut issues) = (Vec::new(), Vec::new());
        while let Some(located) = records.next(&mut record) {
            // A record that is not UTF-8 is rejected, so it is no occurrence.
            let Fields::Text(text) = located.fields else {
                continue;
            };
            let repeated = key_fingerprint(text.as_byte_record(), &key_cells)
                .is_some_and(|fingerprint| duplicated.contains(&fingerprint));
            if !repeated {
                continue;
            }
            let mut values = recycle(std::mem::take(&mut spare_values));
            if rules.check(text, &mut values, &mut issues) {
                self.rows_by_key
                    .entry(rules.key(&values))
                    .or_default()
                    .push(located.position.row);
            }
            spare_values = recycle(values);
        }
    }

    /// Rows superseded by a later valid occurrence of their key, sorted.
    pub fn superseded(&self) -> Vec<u64> {
        let mut rows: Vec<u64> = self
            .rows_by_key
            .values()
            .flat_map(|rows| {
                let last = rows.iter().copied().max().unwrap_or(0);
                rows.iter().copied().filter(move |&r| r != last)
            })
            .collect();
        rows.sort_unstable();
        rows
    }

    /// How many keys have more than one valid occurrence.
    pub fn duplicated_keys(&self) -> usize {
        self.rows_by_key
            .values()
            .filter(|rows| rows.len() > 1)
            .count()
    }
}

/// The rows of one chunk among all superseded rows (both sorted).
pub fn rows_in_chunk<'a>(superseded: &'a [u64], chunk: &ChunkPlan) -> &'a [u64] {
    let from = superseded.partition_point(|&r| r < chunk.first_row);
    let to = superseded.partition_point(|&r| r < chunk.first_row + chunk.rows);
    &superseded[from..to]
}
