//! Where a file goes: the run it starts ([`run_id`], the idempotent execution name shared by the
//! `trigger` function and `chute backfill`) and who gets its email ([`Routing`]): the team whose
//! folder the file was dropped in (`incoming/<team>/…`), else the default list, plus the success or
//! failure list for the outcome.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::report::Status;

/// One uploaded object version: what an S3 event names, or what a bucket listing finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
    pub etag: Option<String>,
    pub version_id: Option<String>,
}

/// A Step Functions execution name (≤ 80 of `A-Za-z0-9-_`) unique to this object version:
/// readable file stem plus a hash of bucket, key and version (or ETag). Starting the same name twice
/// is refused by Step Functions, which is what makes a repeated event or backfill start nothing.
pub fn run_id(object: &ObjectRef, etag: &str) -> String {
    let version = object.version_id.as_deref().unwrap_or(etag);
    let hash = xxhash_rust::xxh3::xxh3_64(
        format!("{}\u{0}{}\u{0}{}", object.bucket, object.key, version).as_bytes(),
    );
    let name = object.key.rsplit('/').next().unwrap_or("");
    // `.csv` in any case: `x.CSV` is `x`, as the trigger accepts `.CSV` files.
    let stem = match name.len().checked_sub(4) {
        Some(cut) if name.is_char_boundary(cut) && name[cut..].eq_ignore_ascii_case(".csv") => {
            &name[..cut]
        }
        _ => name,
    };
    let readable: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(60)
        .collect();
    format!("{readable}-{hash:016x}")
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routing {
    #[serde(default)]
    pub default: Vec<String>,
    #[serde(default)]
    pub success: Vec<String>,
    #[serde(default)]
    pub failure: Vec<String>,
    /// Team folder → addresses.
    #[serde(default)]
    pub teams: BTreeMap<String, Vec<String>>,
}

impl Routing {
    /// Recipients for a file at `key` (under `prefix`) with `status`, de-duplicated, in order.
    pub fn recipients(&self, prefix: &str, key: &str, status: Status) -> Vec<String> {
        let team = key
            .strip_prefix(prefix)
            .and_then(|rest| rest.split_once('/'))
            .map(|(folder, _)| folder)
            .and_then(|folder| self.teams.get(folder));
        let outcome = if status == Status::Succeeded {
            &self.success
        } else {
            &self.failure
        };
        let mut to: Vec<String> = Vec::new();
        for address in team.unwrap_or(&self.default).iter().chain(outcome) {
            if !to.iter().any(|a| a.eq_ignore_ascii_case(address)) {
                to.push(address.clone());
            }
        }
        to
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routing() -> Routing {
        Routing {
            default: vec!["data@shop.test".into()],
            success: vec!["audit@shop.test".into()],
            failure: vec!["oncall@shop.test".into(), "DATA@shop.test".into()],
            teams: BTreeMap::from([("shoes".into(), vec!["shoes@shop.test".into()])]),
        }
    }

    fn object(key: &str) -> ObjectRef {
        ObjectRef {
            bucket: "b".into(),
            key: key.into(),
            etag: None,
            version_id: None,
        }
    }

    #[test]
    fn run_ids_are_valid_execution_names_and_stable_per_version() {
        let object = object("incoming/Spring sale (v2).csv");
        let id = run_id(&object, "abc");
        assert!(id.starts_with("Spring-sale--v2--"), "{id}");
        assert!(
            id.len() <= 80
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(id, run_id(&object, "abc"));
        assert_ne!(id, run_id(&object, "def"), "a new upload is a new run");
    }

    #[test]
    fn the_csv_extension_is_dropped_in_any_case() {
        for key in ["incoming/x.csv", "incoming/x.CSV", "incoming/x.Csv"] {
            let id = run_id(&object(key), "e");
            assert!(id.starts_with("x-") && id.len() == 2 + 16, "{key}: {id}");
        }
        assert!(run_id(&object("incoming/x.txt"), "e").starts_with("x-txt-"));
        assert!(run_id(&object("incoming/é.csv"), "e").starts_with("--"));
    }

    #[test]
    fn team_folder_picks_the_team_list() {
        assert_eq!(
            routing().recipients("incoming/", "incoming/shoes/a.csv", Status::Succeeded),
            ["shoes@shop.test", "audit@shop.test"]
        );
    }

    #[test]
    fn unknown_folders_and_top_level_files_go_to_the_default_list() {
        let r = routing();
        assert_eq!(
            r.recipients("incoming/", "incoming/hats/a.csv", Status::Partial),
            ["data@shop.test", "oncall@shop.test"]
        );
        assert_eq!(
            r.recipients("incoming/", "incoming/a.csv", Status::Failed),
            ["data@shop.test", "oncall@shop.test"]
        );
    }
}
