//! chute: validate, transform and upsert product CSVs into MongoDB.
//!
//! The engine (schema, rules, planning, transform, dedup, report model) is pure: bytes in, documents
//! and rejections out. The adapters (`store`, `blob`, `notify`, `lambda`) are thin layers over the
//! MongoDB driver and the AWS SDK, used by the Lambda binaries in `functions/`.

#[cfg(feature = "adapters")]
pub mod aws;
#[cfg(feature = "adapters")]
pub mod blob;
pub mod bsonw;
pub mod dedup;
pub mod error;
pub mod header;
#[cfg(feature = "adapters")]
pub mod lambda;
pub mod memory;
#[cfg(feature = "adapters")]
pub mod notify;
pub mod plan;
pub mod render;
pub mod report;
pub mod routing;
pub mod rules;
pub mod schema;
#[cfg(feature = "adapters")]
pub mod store;
pub mod transform;
