//! Where a file goes: the run it starts ([`run_id`], the idempotent execution name shared by the
//! `trigger` function and `chute backfill`) and who gets its email ([`Routing`]): the team whose
//! folder the file was dropped in (`incoming/<team>/…`), else the default list, plus the success or
//! failure list for the outcome; and which feed source a file belongs to ([`source`]).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::error::{FileCode, FileError};
use crate::feed::check_source_name;
use crate::report::Status;

/// The source of files that name none (no `chute-source`, no team folder).
pub const DEFAULT_SOURCE: &str = "default";

/// The feed source of the file at `key` (under `incoming_prefix`): object metadata `chute-source`
/// when set, else the team folder (`incoming/<team>/…`), else [`DEFAULT_SOURCE`]. The name becomes
/// part of document field names (`_sources.<name>`), so anything outside `A-Za-z0-9_-` refuses the
/// file rather than being rewritten into another source's name.
pub fn source(
    incoming_prefix: &str,
    key: &str,
    metadata: &HashMap<String, String>,
) -> Result<String, FileError> {
    let refuse = |why: String| FileError::new(FileCode::Settings, why);
    if let Some(named) = metadata.get("chute-source") {
        let named = named.trim();
        check_source_name(named).map_err(|e| refuse(format!("chute-source metadata: {e}")))?;
        return Ok(named.to_string());
    }
    match key
        .strip_prefix(incoming_prefix)
        .and_then(|rest| rest.split_once('/'))
    {
        Some((folder, _)) => {
            check_source_name(folder).map_err(|e| {
                refuse(format!(
                    "the folder `{folder}` names the file's source: {e} (or set chute-source metadata)"
                ))
            })?;
            Ok(folder.to_string())
        }
        None => Ok(DEFAULT_SOURCE.to_string()),
    }
}

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
    fn the_source_is_the_metadata_else_the_team_folder_else_default() {
        let none = HashMap::new();
        let named = HashMap::from([("chute-source".to_string(), " erp ".to_string())]);
        assert_eq!(
            source("incoming/", "incoming/shoes/a.csv", &none).unwrap(),
            "shoes"
        );
        assert_eq!(
            source("incoming/", "incoming/shoes/x/a.csv", &none).unwrap(),
            "shoes"
        );
        assert_eq!(
            source("incoming/", "incoming/a.csv", &none).unwrap(),
            DEFAULT_SOURCE
        );
        assert_eq!(
            source("incoming/", "incoming/shoes/a.csv", &named).unwrap(),
            "erp"
        );
        assert_eq!(
            source("incoming/", "incoming/a.csv", &named).unwrap(),
            "erp"
        );
    }

    #[test]
    fn a_source_name_that_cannot_be_a_field_name_refuses_the_file() {
        let err = source("incoming/", "incoming/shoe team/a.csv", &HashMap::new()).unwrap_err();
        assert_eq!(err.code, FileCode::Settings);
        assert!(
            err.message.contains("folder `shoe team`"),
            "{}",
            err.message
        );
        let dotted = HashMap::from([("chute-source".to_string(), "a.b".to_string())]);
        let err = source("incoming/", "incoming/a.csv", &dotted).unwrap_err();
        assert!(
            err.message
                .contains("chute-source metadata: source name `a.b`"),
            "{}",
            err.message
        );
        let empty = HashMap::from([("chute-source".to_string(), " ".to_string())]);
        assert!(source("incoming/", "incoming/a.csv", &empty).is_err());
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
