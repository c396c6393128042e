//! What each step stores, one declared type per record: the plan (`plan.json`), a chunk's
//! transform record (`chunk-N.transform.json`), a finished chunk's import record
//! (`chunk-N.import.json`) and the import's progress in the `import_runs` ledger
//! (`progress.<chunk>`). The transform and import records are also what those steps return to the
//! state machine, without their rows: field names are the JSON the ASL reads (`$.Payload.finished`).
//!
//! A chunk's completion is recorded in one place: `progress.<chunk>.finished` in the ledger, set
//! after the import record is stored, so a finished chunk always has its record to replay.

use serde::{Deserialize, Serialize};

use super::counts::{DeltaCounts, Difference, TransformCounts, WriteCounts};
use crate::delta::DeltaPlan;
use crate::error::Refusal;
use crate::feed::Mode;
use crate::input::{NotUtf8Rows, PlanInput};
use crate::records::ChunkPlan;
use crate::rules::DamagedValues;
use crate::transform::RejectedRow;

/// The plan details chunks need (`staging/<run>/plan.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRecord {
    pub header: Vec<String>,
    pub chunks: Vec<ChunkPlan>,
    /// Rows superseded by a later valid occurrence of their key (sorted).
    pub superseded: Vec<u64>,
    pub warnings: Vec<String>,
    /// How the file was read (encoding, delimiter, compression, number format) and where its
    /// decoded copy is; absent in plans stored before files other than plain CSV were read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<PlanInput>,
    /// The schema's reason for its continuation rows, for the report's warning (the schema as the
    /// run read it, whatever changes before the report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuation: Option<String>,
    /// Whether the run diffs against its source's snapshot ([`crate::delta`]); absent in plans
    /// stored before delta import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<DeltaPlan>,
    /// Database commands validate sent (the ledger entry, the collection set-up, the lease).
    #[serde(default)]
    pub commands: u64,
}

/// What `transform` stores for a chunk (`staging/<run>/chunk-N.transform.json`, with the rejected
/// rows) and returns (without them, to stay small); the import's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransformRecord {
    pub run_id: String,
    /// The file's object.
    pub bucket: String,
    pub key: String,
    pub schema: String,
    /// The feed source that sent the file, carried to the import.
    #[serde(rename = "source")]
    pub feed_source: String,
    pub mode: Mode,
    pub chunk: u32,
    #[serde(flatten)]
    pub counts: TransformCounts,
    pub staged_key: String,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected_rows: Vec<RejectedRow>,
    /// Of `rejected`: rows that are not UTF-8, and what they decode as (the report's hint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_utf8: Option<NotUtf8Rows>,
    /// Damaged identifiers kept as written (`damage = "warn"`), for the report's warning.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub damaged: Vec<DamagedValues>,
    /// The per-file import time budget, carried from the plan to the import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_budget_ms: Option<u64>,
}

/// What `import` returns after each invocation and stores once the chunk is finished
/// (`staging/<run>/chunk-N.import.json`, with the refusals; the returned copy leaves them out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRecord {
    pub run_id: String,
    pub chunk: u32,
    #[serde(flatten)]
    pub counts: WriteCounts,
    /// A dry run's sample of the field changes it would make.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<Difference>,
    pub duration_ms: u64,
    /// True when the ledger showed the chunk done and nothing was written.
    pub replayed: bool,
    /// False when this invocation ran out of its time budget with staged documents left: the
    /// counts are those so far, and the state machine invokes the import again, which resumes
    /// where [`ImportProgress`] says this one stopped.
    #[serde(default = "yes")]
    pub finished: bool,
    /// Staged documents of the chunk written so far (all of them once finished).
    #[serde(default)]
    pub position: u64,
    /// Invocations the chunk's import took so far.
    #[serde(default)]
    pub invocations: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refusals: Vec<Refusal>,
    /// What the snapshot said of the chunk and the commands its import sent ([`crate::delta`]).
    #[serde(default)]
    pub delta: DeltaCounts,
}

fn yes() -> bool {
    true
}

/// How far a chunk's import got (`progress.<chunk>` in the run's ledger document), updated after
/// each invocation that ran out of time and once more when the chunk is done.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportProgress {
    /// Staged documents written so far, and the bytes of the staged file they take: the next
    /// invocation reads the staged file from `bytes` on.
    pub documents: u64,
    pub bytes: u64,
    /// The ETag of the staged file those offsets are in: if the transform re-ran since (a resumed
    /// run), the import starts the chunk over (recounting, not rewriting, what it wrote).
    #[serde(default)]
    pub staged_etag: String,
    /// Counts so far (`refused` is the number; the refusals themselves are in S3).
    #[serde(flatten)]
    pub counts: WriteCounts,
    /// A dry run's sample of field differences so far.
    #[serde(default)]
    pub differences: Vec<Difference>,
    /// `documents` at the start of each earlier invocation that had refusals: each wrote them to
    /// its refusal part ([`super::RunKeys::refusal_part`]), read back when the chunk finishes.
    pub refusal_parts: Vec<u64>,
    pub invocations: u32,
    /// Time spent writing, over all invocations.
    pub duration_ms: u64,
    /// The chunk's completion: its import record is stored.
    pub finished: bool,
    /// What the snapshot said of the chunk and the commands sent so far.
    #[serde(default)]
    pub delta: DeltaCounts,
}

impl ImportRecord {
    /// The record of the chunk as far as `progress` got, with `refusals`.
    pub fn of(
        run_id: &str,
        chunk: u32,
        progress: &ImportProgress,
        refusals: Vec<Refusal>,
    ) -> ImportRecord {
        ImportRecord {
            run_id: run_id.to_string(),
            chunk,
            counts: progress.counts,
            differences: progress.differences.clone(),
            duration_ms: progress.duration_ms,
            replayed: false,
            finished: progress.finished,
            position: progress.documents,
            invocations: progress.invocations,
            refusals,
            delta: progress.delta,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Code, Position};
    use crate::format::ResolvedFormat;
    use crate::input::{ReadAs, StagedCopy};
    use crate::transform::Issue;
    use crate::value::NumberFormat;

    fn difference() -> Difference {
        Difference {
            key: "A-1".into(),
            field: "price".into(),
            old: Some("1".into()),
            new: None,
        }
    }

    fn refusal() -> Refusal {
        Refusal {
            position: Position { row: 4, line: 5 },
            code: 121,
            message: "Document failed validation".into(),
        }
    }

    fn counts() -> WriteCounts {
        WriteCounts {
            inserted: 1,
            updated: 2,
            unchanged: 3,
            refused: 4,
            reactivated: 5,
            merged: 6,
        }
    }

    fn read_back<T>(record: &T)
    where
        T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let json = serde_json::to_vec(record).unwrap();
        assert_eq!(&serde_json::from_slice::<T>(&json).unwrap(), record);
    }

    fn delta() -> DeltaCounts {
        DeltaCounts {
            new: 1,
            changed: 2,
            unchanged: 3,
            commands: 4,
        }
    }

    /// Each record's JSON, byte for byte, from a value with every field set: the ASL, stored
    /// records of earlier runs and the report read these names and nesting.
    #[test]
    fn stored_records_keep_their_json_shape() {
        let plan = PlanRecord {
            header: vec!["sku".into()],
            chunks: vec![ChunkPlan {
                index: 0,
                start: 4,
                end: 10,
                first_row: 1,
                first_line: 2,
                rows: 3,
            }],
            superseded: vec![2],
            warnings: vec!["w".into()],
            input: Some(PlanInput {
                read_as: ReadAs {
                    format: "csv".into(),
                    compression: Some("gzip".into()),
                    encoding: "UTF-8".into(),
                    delimiter: ",".into(),
                    numbers: "1234.56".into(),
                    sheet: Some("S".into()),
                },
                format: ResolvedFormat {
                    delimiter: b',',
                    numbers: NumberFormat::default(),
                },
                staged: Some(StagedCopy {
                    key: "k".into(),
                    etag: "e".into(),
                }),
            }),
            continuation: Some("an image".into()),
            delta: Some(DeltaPlan {
                base: None,
                off: Some("why".into()),
                fingerprint: "f".into(),
            }),
            commands: 3,
        };
        assert_eq!(
            serde_json::to_string(&plan).unwrap(),
            r#"{"header":["sku"],"chunks":[{"index":0,"start":4,"end":10,"first_row":1,"first_line":2,"rows":3}],"superseded":[2],"warnings":["w"],"input":{"read_as":{"format":"csv","compression":"gzip","encoding":"UTF-8","delimiter":",","numbers":"1234.56","sheet":"S"},"delimiter":44,"numbers":{"decimal":".","thousands":null},"staged":{"key":"k","etag":"e"}},"continuation":"an image","delta":{"off":"why","fingerprint":"f"},"commands":3}"#
        );

        let transformed = TransformRecord {
            run_id: "run".into(),
            bucket: "b".into(),
            key: "k".into(),
            schema: "products".into(),
            feed_source: "erp".into(),
            mode: Mode::Full,
            chunk: 1,
            counts: TransformCounts {
                rows: 5,
                valid: 3,
                duplicate: 1,
                rejected: 1,
                skipped: 0,
            },
            staged_key: "s".into(),
            duration_ms: 40,
            rejected_rows: vec![RejectedRow {
                position: Position { row: 2, line: 3 },
                issues: vec![Issue {
                    column: "price".into(),
                    code: Code::TypeError,
                    message: "m".into(),
                    value: "x".into(),
                }],
                fields: vec!["A".into()],
            }],
            not_utf8: Some(NotUtf8Rows {
                rows: 1,
                first_row: 2,
                decode_as: "windows-1252".into(),
            }),
            damaged: vec![DamagedValues {
                column: "gtin".into(),
                damage: "in scientific notation".into(),
                values: 2,
                first_row: 4,
            }],
            import_budget_ms: Some(7),
        };
        assert_eq!(
            serde_json::to_string(&transformed).unwrap(),
            r#"{"run_id":"run","bucket":"b","key":"k","schema":"products","source":"erp","mode":"full","chunk":1,"rows":5,"valid":3,"duplicate":1,"rejected":1,"staged_key":"s","duration_ms":40,"rejected_rows":[{"row":2,"line":3,"issues":[{"column":"price","code":"type_error","message":"m","value":"x"}],"fields":["A"]}],"not_utf8":{"rows":1,"first_row":2,"decode_as":"windows-1252"},"damaged":[{"column":"gtin","damage":"in scientific notation","values":2,"first_row":4}],"import_budget_ms":7}"#
        );

        let imported = ImportRecord {
            run_id: "run".into(),
            chunk: 1,
            counts: counts(),
            differences: vec![difference()],
            duration_ms: 60,
            replayed: true,
            finished: true,
            position: 3,
            invocations: 2,
            refusals: vec![refusal()],
            delta: delta(),
        };
        assert_eq!(
            serde_json::to_string(&imported).unwrap(),
            r#"{"run_id":"run","chunk":1,"inserted":1,"updated":2,"unchanged":3,"refused":4,"reactivated":5,"merged":6,"differences":[{"key":"A-1","field":"price","old":"1","new":null}],"duration_ms":60,"replayed":true,"finished":true,"position":3,"invocations":2,"refusals":[{"row":4,"line":5,"code":121,"message":"Document failed validation"}],"delta":{"new":1,"changed":2,"unchanged":3,"commands":4}}"#
        );

        let progress = ImportProgress {
            documents: 3,
            bytes: 300,
            staged_etag: "e".into(),
            counts: counts(),
            differences: vec![difference()],
            refusal_parts: vec![0],
            invocations: 2,
            duration_ms: 60,
            finished: true,
            delta: delta(),
        };
        assert_eq!(
            serde_json::to_string(&progress).unwrap(),
            r#"{"documents":3,"bytes":300,"staged_etag":"e","inserted":1,"updated":2,"unchanged":3,"refused":4,"reactivated":5,"merged":6,"differences":[{"key":"A-1","field":"price","old":"1","new":null}],"refusal_parts":[0],"invocations":2,"duration_ms":60,"finished":true,"delta":{"new":1,"changed":2,"unchanged":3,"commands":4}}"#
        );
        // The ledger holds it as BSON: the same fields, read back whole.
        let stored = bson::to_document(&progress).unwrap();
        let keys: Vec<&str> = stored.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "documents",
                "bytes",
                "staged_etag",
                "inserted",
                "updated",
                "unchanged",
                "refused",
                "reactivated",
                "merged",
                "differences",
                "refusal_parts",
                "invocations",
                "duration_ms",
                "finished",
                "delta"
            ]
        );
        assert_eq!(
            bson::from_document::<ImportProgress>(stored).unwrap(),
            progress
        );
        read_back(&plan);
        read_back(&transformed);
        read_back(&imported);
    }
}
