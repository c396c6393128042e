//! What a run records, declared once: the counts each step keeps ([`counts`]), the records the
//! steps store in S3 and in the `import_runs` ledger ([`records`]), and the S3 key of every object
//! of a run ([`keys`]). Pure: the handlers write these, the report reads them back as they are.
//!
//! Adding a write counter is one field of [`WriteCounts`]: the import record, the ledger's
//! progress, the writer's outcome and the report's totals all carry that type.

pub mod counts;
pub mod keys;
pub mod records;

pub use counts::{
    is_zero, keep_sample, DeltaCounts, Difference, TransformCounts, WriteCounts, DIFFERENCE_SAMPLE,
};
pub use keys::RunKeys;
pub use records::{ImportProgress, ImportRecord, PlanRecord, TransformRecord};
