//! The whole pipeline over a file held in memory: plan, resolve duplicates, transform every chunk.
//! The Lambdas do the same steps over S3; tests, benchmarks and fuzzing use this.

use crate::dedup::{rows_in_chunk, Occurrences};
use crate::error::FileError;
use crate::format::ResolvedFormat;
use crate::plan::{plan, FingerprintSet, Plan, PlanOptions};
use crate::records::ChunkPlan;
use crate::report::{ChunkTally, ReportBuilder};
use crate::run::WriteCounts;
use crate::schema::Schema;
use crate::transform::{check_chunk, transform_chunk, ChunkOutcome, RowRules};

/// Everything one file produced.
pub struct FileOutcome {
    pub plan: Plan,
    pub superseded: Vec<u64>,
    pub chunks: Vec<ChunkOutcome>,
    /// Staged BSON documents of all chunks, in file order.
    pub staged: Vec<u8>,
}

impl FileOutcome {
    pub fn valid(&self) -> u64 {
        self.chunks.iter().map(|c| c.valid).sum()
    }
    pub fn rejected(&self) -> u64 {
        self.chunks.iter().map(|c| c.rejected.len() as u64).sum()
    }
    pub fn duplicate(&self) -> u64 {
        self.chunks.iter().map(|c| c.duplicate).sum()
    }
    pub fn skipped(&self) -> u64 {
        self.chunks.iter().map(|c| c.skipped).sum()
    }

    /// Hands the header's warnings and every chunk to `builder` as the report function receives
    /// them from a run whose import inserted every staged document: a run's report without a
    /// database (`chute check`, tests).
    pub fn fill_report(&self, builder: &mut ReportBuilder) {
        builder.warnings(&self.plan.header.warnings);
        for (index, chunk) in self.chunks.iter().enumerate() {
            builder.chunk(&ChunkTally {
                index: index as u32,
                rows: chunk.rows,
                transformed: Some(chunk.into()),
                not_utf8: chunk.not_utf8.clone(),
                damaged: chunk.damaged.clone(),
                written: Some(WriteCounts {
                    inserted: chunk.valid,
                    ..WriteCounts::default()
                }),
            });
            for row in &chunk.rejected {
                builder.rejected_row(row);
            }
        }
    }
}

/// Runs the engine over `bytes` (UTF-8 CSV in the schema's declared format) exactly as the
/// pipeline does chunk by chunk.
pub fn process(
    bytes: &[u8],
    schema: &Schema,
    options: &PlanOptions,
) -> Result<FileOutcome, FileError> {
    let format = schema.format.as_declared();
    process_with_progress(bytes, schema, format, options, true, |_| {})
}

/// Where [`process_with_progress`] is: the plan is made, then each chunk is transformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The file has this many data rows.
    Planned { rows: u64 },
    /// A chunk of this many rows was transformed.
    Chunk { rows: u64 },
}

/// [`process`] over `bytes` read with `format` (a decoded file's), telling `progress` as it goes
/// (a progress bar for a large file). Without `keep_staged` no document is written
/// ([`check_chunk`]: `staged` comes back empty): a check that only wants the outcome needs neither
/// the memory nor the BSON.
pub fn process_with_progress(
    bytes: &[u8],
    schema: &Schema,
    format: ResolvedFormat,
    options: &PlanOptions,
    keep_staged: bool,
    mut progress: impl FnMut(Progress),
) -> Result<FileOutcome, FileError> {
    let plan = plan(bytes, schema, format, options)?;
    progress(Progress::Planned { rows: plan.rows });
    let rules = RowRules::new(schema, &plan.header, format);
    let slice = |c: &ChunkPlan| &bytes[c.start as usize..c.end as usize];
    let superseded = if plan.duplicate_fingerprints.is_empty() {
        Vec::new()
    } else {
        let duplicated: FingerprintSet = plan.duplicate_fingerprints.iter().copied().collect();
        let mut occurrences = Occurrences::default();
        for chunk in &plan.chunks {
            occurrences.scan_chunk(&rules, &plan.header, chunk, slice(chunk), &duplicated);
        }
        occurrences.superseded()
    };
    let mut staged = Vec::new();
    let chunks = plan
        .chunks
        .iter()
        .map(|chunk| {
            let superseded = rows_in_chunk(&superseded, chunk);
            let outcome = if keep_staged {
                transform_chunk(&rules, chunk, slice(chunk), superseded, &mut staged)
            } else {
                check_chunk(&rules, chunk, slice(chunk), superseded)
            };
            progress(Progress::Chunk { rows: outcome.rows });
            outcome
        })
        .collect();
    Ok(FileOutcome {
        superseded,
        chunks,
        staged,
        plan,
    })
}
