//! chute: validate, transform and upsert product CSVs into MongoDB.
//!
//! The engine is pure, bytes in, documents and rejections out: [`schema`] describes a file,
//! [`rules`] checks one cell into a [`value`], [`plan`] cuts the file into chunks over [`records`],
//! [`dedup`] decides which repeated key wins, [`delta`] diffs a feed against what its source last
//! supplied, [`transform`] writes documents with [`bson_writer`],
//! [`run`] declares what the steps record, [`report`] and [`render`] tell the outcome, and
//! [`pipeline`] runs all of it over bytes in memory. [`settings`] reads the environment. The
//! adapters (`store`, `blob`, `notify`, `workflow`, `secrets`) are thin layers over the MongoDB
//! driver and the AWS SDK; `app` holds what the Lambda handlers (`lambda`, served by the binaries
//! in `functions/`) and the command line share.
//!
//! The names most callers need are re-exported here.

#[cfg(feature = "adapters")]
pub mod app;
#[cfg(feature = "adapters")]
pub mod aws;
#[cfg(feature = "adapters")]
pub mod blob;
pub mod bson_writer;
pub mod clock;
pub mod dedup;
pub mod delta;
pub mod error;
pub mod feed;
pub mod format;
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
pub mod run;
pub mod run_event;
pub mod schema;
#[cfg(feature = "adapters")]
pub mod secrets;
pub mod settings;
#[cfg(feature = "adapters")]
pub mod store;
pub mod transform;
pub mod value;
#[cfg(feature = "adapters")]
pub mod workflow;

pub use error::{ChuteError, Code, FileCode, FileError, Position, SchemaError};
pub use pipeline::{process, FileOutcome};
pub use plan::{plan, Plan, PlanOptions};
pub use records::{ChunkPlan, ChunkRecords};
pub use report::{Report, ReportBuilder, Status};
pub use schema::Schema;
pub use transform::{transform_chunk, transform_chunk_parts, RejectedRow, RowRules};
pub use value::{CellValue, Decimal};
