//! Starting a run: what an object's execution input is (run id, schema, source, mode, from the
//! object's metadata and the settings) and which objects start runs. The `trigger` function and
//! `chute backfill` both start runs through this, so an object's run has one name whoever starts it.

use serde::{Deserialize, Serialize};

use crate::blob::ObjectInfo;
use crate::clock::now_rfc3339;
use crate::error::{FileCode, FileError};
use crate::feed::Mode;
pub use crate::routing::{run_id, ObjectRef};
use crate::routing::{source, DEFAULT_SOURCE};
use crate::settings::Config;

/// The execution input `trigger` starts a run with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInput {
    pub run_id: String,
    pub bucket: String,
    pub key: String,
    pub etag: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    pub schema: String,
    /// The feed source that sent the file ([`crate::routing::source`]).
    #[serde(rename = "source")]
    pub feed_source: String,
    /// The configured mode of the source, or object metadata `chute-mode`.
    pub mode: Mode,
    /// Object metadata `chute-force-stale: true`: a full refresh marks its stale products even
    /// above `max_stale_percent`.
    #[serde(default)]
    pub force_stale: bool,
    /// Set by the trigger when the object's metadata or folder cannot be used (an unknown
    /// `chute-mode`, a source name that cannot be a field name): validate refuses the file with
    /// it, so the run still ends in a report saying why. `mode` is then `dry-run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<FileError>,
    /// Overrides the configured chunk size for this file (object metadata `chute-chunk-bytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_bytes: Option<u64>,
    /// When the object event was handled (RFC 3339).
    pub requested_at: String,
    /// Chunks processed at once (the Map's `MaxConcurrencyPath`).
    pub map_concurrency: u32,
    /// Share of chunks that may fail before the Map fails (`ToleratedFailurePercentagePath`).
    pub tolerated_failure_percent: u32,
}

/// The execution input of a run of `object` (HEAD told `info`): the run id, the schema and chunk
/// size from the object's metadata (`chute-schema`, `chute-chunk-bytes`) or the settings, the
/// file's source ([`crate::routing::source`]) and mode (see [`mode_of`]). `chute backfill` builds its runs with this too, so both
/// start the same execution for the same version.
pub fn run_input(config: &Config, object: &ObjectRef, info: &ObjectInfo) -> RunInput {
    let etag = object
        .etag
        .clone()
        .map(|e| e.trim_matches('"').to_string())
        .unwrap_or(info.etag.clone());
    let schema = info
        .metadata
        .get("chute-schema")
        .cloned()
        .unwrap_or_else(|| config.default_schema.clone());
    let (source, unusable) = match source(&config.incoming_prefix, &object.key, &info.metadata) {
        Ok(source) => (source, None),
        Err(e) => (DEFAULT_SOURCE.to_string(), Some(e)),
    };
    let settings = match unusable {
        Some(e) => Err(e),
        None => mode_of(config, &schema, &source, info),
    };
    let (mode, force_stale, refused) = match settings {
        Ok((mode, force)) => (mode, force, None),
        // A refused run writes nothing whatever happens: validate refuses it before any write.
        Err(e) => (Mode::DryRun, false, Some(e)),
    };
    RunInput {
        run_id: run_id(object, &etag),
        bucket: object.bucket.clone(),
        key: object.key.clone(),
        etag,
        version_id: object.version_id.clone().or(info.version_id.clone()),
        schema,
        feed_source: source,
        mode,
        force_stale,
        refused,
        chunk_bytes: info
            .metadata
            .get("chute-chunk-bytes")
            .and_then(|v| v.parse().ok()),
        requested_at: now_rfc3339(),
        map_concurrency: config.map_concurrency,
        tolerated_failure_percent: config.tolerated_failure_percent,
    }
}

/// The file's mode (metadata `chute-mode`, else the schema's setting for `source`; the default
/// when the schema does not load, which validate then refuses) and `chute-force-stale`.
pub fn mode_of(
    config: &Config,
    schema: &str,
    source: &str,
    info: &ObjectInfo,
) -> Result<(Mode, bool), FileError> {
    let refuse = |why: String| FileError::new(FileCode::Settings, why);
    let mode = match info.metadata.get("chute-mode") {
        Some(text) if !is_reapply(text) => Mode::from_metadata(text).map_err(refuse)?,
        _ => config
            .schema(schema)
            .map(|s| s.feed.for_source(source).mode)
            .unwrap_or_default(),
    };
    let force_stale = match info.metadata.get("chute-force-stale") {
        None => false,
        Some(text) => match text.trim().to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            _ => {
                return Err(refuse(format!(
                    "chute-force-stale `{text}` is neither true nor false"
                )))
            }
        },
    };
    Ok((mode, force_stale))
}

/// Whether object metadata `chute-mode` asks for a full re-apply: the source's configured mode,
/// every row sent to the database whatever its snapshot says ([`crate::delta`]).
pub fn is_reapply(mode: &str) -> bool {
    mode.trim().eq_ignore_ascii_case("reapply")
}

/// Names of files that start runs (any case). The name only filters what is dropped beside the
/// data (notes, images): how a file is read is told by its bytes (see [`crate::input`]).
pub const WANTED_SUFFIXES: [&str; 7] = [".csv", ".tsv", ".txt", ".gz", ".zst", ".zip", ".xlsx"];

/// Whether `key` starts runs: a data file ([`WANTED_SUFFIXES`]) under the incoming prefix.
pub fn wanted(config: &Config, key: &str) -> bool {
    let name = key.to_ascii_lowercase();
    key.starts_with(&config.incoming_prefix) && WANTED_SUFFIXES.iter().any(|s| name.ends_with(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A schema directory with `feedy`: the products schema with a full-refresh source `erp`.
    fn schema_dir() -> &'static std::path::Path {
        static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
        DIR.get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("chute-trigger-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let products = std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/products.toml"),
            )
            .unwrap();
            let feedy = products.replace("name = \"products\"", "name = \"feedy\"");
            std::fs::write(
                dir.join("feedy.toml"),
                format!("{feedy}\n[sources.erp]\nmode = \"full\"\n"),
            )
            .unwrap();
            dir
        })
    }

    fn input(key: &str, metadata: &[(&str, &str)]) -> RunInput {
        let config = Config {
            schema_dir: Some(schema_dir().to_path_buf()),
            default_schema: "feedy".into(),
            ..Config::from_env().unwrap()
        };
        let object = ObjectRef {
            bucket: "b".into(),
            key: key.into(),
            etag: Some("e".into()),
            version_id: None,
        };
        let info = ObjectInfo {
            etag: "e".into(),
            size: 1,
            version_id: None,
            metadata: metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        run_input(&config, &object, &info)
    }

    #[test]
    fn the_source_picks_its_configured_mode_and_metadata_overrides_it() {
        let erp = input("incoming/erp/a.csv", &[]);
        assert_eq!(
            (erp.feed_source.as_str(), erp.mode, erp.force_stale),
            ("erp", Mode::Full, false)
        );
        assert_eq!(erp.refused, None);
        let other = input("incoming/shoes/a.csv", &[]);
        assert_eq!(
            (other.feed_source.as_str(), other.mode),
            ("shoes", Mode::Incremental)
        );
        let dry = input(
            "incoming/a.csv",
            &[
                ("chute-source", "erp"),
                ("chute-mode", "dry-run"),
                ("chute-force-stale", "TRUE"),
            ],
        );
        assert_eq!(
            (dry.feed_source.as_str(), dry.mode, dry.force_stale),
            ("erp", Mode::DryRun, true)
        );
        // A re-apply keeps the source's configured mode (validate turns delta off for it).
        let reapply = input("incoming/erp/a.csv", &[("chute-mode", " Reapply ")]);
        assert_eq!((reapply.mode, reapply.refused), (Mode::Full, None));
    }

    #[test]
    fn unusable_metadata_starts_a_run_that_validate_refuses_and_that_writes_nothing() {
        for (metadata, expected) in [
            (("chute-mode", "fulll"), "chute-mode `fulll` is not a mode"),
            (
                ("chute-force-stale", "yes"),
                "chute-force-stale `yes` is neither",
            ),
            (("chute-source", "a/b"), "source name `a/b` must be"),
        ] {
            let refused = input("incoming/erp/a.csv", &[metadata]);
            let error = refused.refused.expect("refused");
            assert_eq!(error.code, FileCode::Settings);
            assert!(error.message.contains(expected), "{}", error.message);
            assert_eq!(refused.mode, Mode::DryRun);
        }
    }

    #[test]
    fn compressed_files_and_spreadsheets_start_runs() {
        let config = Config::from_env().unwrap();
        let key = |name: &str| format!("{}{name}", config.incoming_prefix);
        for name in [
            "a.csv", "a.CSV", "a.csv.gz", "a.gz", "a.zst", "a.zip", "a.xlsx", "a.tsv", "t/a.txt",
        ] {
            assert!(wanted(&config, &key(name)), "{name}");
        }
        for name in ["a.pdf", "a.csv.bak", "notes"] {
            assert!(!wanted(&config, &key(name)), "{name}");
        }
        assert!(!wanted(&config, "elsewhere/a.csv"));
    }
}
