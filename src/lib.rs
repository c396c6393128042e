//! chute: validate, transform and upsert product CSVs into MongoDB.
//!
//! The engine is pure, bytes in, documents and rejections out: [`schema`] describes a file,
//! [`rules`] checks one cell into a [`value`], [`plan`] cuts the file into chunks over [`records`],
//! [`dedup`] decides which repeated key wins, [`transform`] writes documents with [`bson_writer`],
//! [`report`] and [`render`] tell the outcome, and [`pipeline`] runs all of it over bytes in memory.
//! The adapters (`store`, `blob`, `notify`, `lambda`) are thin layers over the MongoDB driver and
//! the AWS SDK, used by the Lambda binaries in `functions/`.
//!
//! The names most callers need are re-exported here.

#[cfg(feature = "adapters")]
pub mod aws;
#[cfg(feature = "adapters")]
pub mod blob;
pub mod bson_writer;
pub mod dedup;
pub mod error;
pub mod feed;
pub mod header;
pub mod input;
#[cfg(feature = "adapters")]
pub mod lambda;
#[cfg(feature = "adapters")]
pub mod notify;
pub mod pipeline;
pub mod plan;
pub mod records;
pub mod render;
pub mod report;
pub mod routing;
pub mod rules;
pub mod run_event;
pub mod schema;
#[cfg(feature = "adapters")]
pub mod store;
pub mod transform;
pub mod value;

pub use error::{ChuteError, Code, FileCode, FileError, Position, SchemaError};
pub use pipeline::{process, FileOutcome};
pub use plan::{plan, Plan, PlanOptions};
pub use records::{ChunkPlan, ChunkRecords};
pub use report::{Report, ReportBuilder, Status};
pub use schema::Schema;
pub use transform::{transform_chunk, transform_chunk_parts, RejectedRow, RowRules};
pub use value::{CellValue, Decimal};
