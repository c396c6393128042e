//! Feeds: who sent a file (its *source*), whether it is an increment or the source's whole
//! catalogue (its [`Mode`]), what happens to products a full refresh no longer lists ([`Stale`]),
//! and how several sources share one product (`precedence`, `match_also`).
//!
//! Configured next to the schema, in its TOML file:
//!
//! ```toml
//! [feed]                               # for every source of this schema
//! mode = "incremental"                 # or "full" (the file is the source's whole catalogue)
//! stale = "deactivate"                 # or "delete", "keep"
//! max_stale_percent = 10               # a full refresh marking more marks nothing
//! precedence = ["erp", "supplier-a"]   # per field, the first listed source that supplies it wins
//! match_also = ["gtin"]                # columns that identify a product besides its key
//!
//! [sources.erp]                        # overrides of mode / stale / max_stale_percent
//! mode = "full"
//! ```
//!
//! Pure data: the store applies it ([`crate::store`]), the trigger picks the source and mode of a
//! file ([`crate::routing::source`], [`Mode::from_metadata`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::SchemaError;

/// How a file relates to what its source sent before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Rows are merged in; nothing else changes (the default).
    #[default]
    Incremental,
    /// The file is the source's whole catalogue: what it supplied before and not now goes stale.
    Full,
    /// Everything but the writes: the report says what a real run would do.
    DryRun,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Incremental => "incremental",
            Mode::Full => "full",
            Mode::DryRun => "dry-run",
        }
    }

    /// The value of object metadata `chute-mode` (any case, trimmed); the error names the value.
    pub fn from_metadata(text: &str) -> Result<Mode, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "incremental" => Ok(Mode::Incremental),
            "full" => Ok(Mode::Full),
            "dry-run" => Ok(Mode::DryRun),
            _ => Err(format!(
                "chute-mode `{text}` is not a mode; use incremental, full or dry-run"
            )),
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The feed a run's file came in on: who sent it and how it applies (the report's `feed`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunFeed {
    /// The feed source ([`crate::routing::source`]).
    pub source: String,
    pub mode: Mode,
}

/// What a full refresh does with the products its source no longer lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stale {
    /// `active: false` and `stale_since`; a product that comes back is active again.
    #[default]
    Deactivate,
    /// Remove this source's claim; delete the document when no other source supplies it.
    Delete,
    /// Leave it as it is.
    Keep,
}

impl Stale {
    /// The policy's name in schemas and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Stale::Deactivate => "deactivate",
            Stale::Delete => "delete",
            Stale::Keep => "keep",
        }
    }
}

/// The settings of one source of a schema, after its overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourcePolicy {
    pub mode: Mode,
    pub stale: Stale,
    /// Above this share of the source's products going stale, a full refresh marks nothing.
    pub max_stale_percent: u8,
    /// `reapply_days`: a run takes the full path (every row to the database, whatever the
    /// snapshot says) when the last one that did is this many days old ([`crate::delta`]).
    pub reapply_days: Option<u16>,
}

impl Default for SourcePolicy {
    fn default() -> Self {
        SourcePolicy {
            mode: Mode::Incremental,
            stale: Stale::Deactivate,
            max_stale_percent: 10,
            reapply_days: None,
        }
    }
}

/// A schema's feed settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Feed {
    /// What every source gets unless `[sources.<name>]` says otherwise.
    pub defaults: SourcePolicy,
    overrides: BTreeMap<String, Overrides>,
    /// Sources, highest-ranked first; sources not listed rank below all of them.
    pub precedence: Vec<String>,
    /// Column names whose value identifies a product besides its key.
    pub match_also: Vec<String>,
}

impl Feed {
    /// The settings of `source`: its `[sources.<name>]` table over the schema's `[feed]`.
    pub fn for_source(&self, source: &str) -> SourcePolicy {
        let mut policy = self.defaults;
        if let Some(o) = self.overrides.get(source) {
            policy.mode = o.mode.unwrap_or(policy.mode);
            policy.stale = o.stale.unwrap_or(policy.stale);
            policy.max_stale_percent = o.max_stale_percent.unwrap_or(policy.max_stale_percent);
            policy.reapply_days = o.reapply_days.or(policy.reapply_days);
        }
        policy
    }

    /// Rank of `source` in `precedence` (0 is the highest); unlisted sources share the lowest
    /// rank, `precedence.len()`.
    pub fn rank(&self, source: &str) -> usize {
        self.precedence
            .iter()
            .position(|s| s == source)
            .unwrap_or(self.precedence.len())
    }

    /// Checks the `[feed]` and `[sources.*]` tables of a schema with these `columns`.
    pub(crate) fn from_spec(
        feed: Option<FeedSpec>,
        sources: BTreeMap<String, SourceSpec>,
        columns: &[&str],
    ) -> Result<Feed, SchemaError> {
        let feed = feed.unwrap_or_default();
        let mut defaults = SourcePolicy::default();
        defaults.mode = feed.mode.unwrap_or(defaults.mode);
        defaults.stale = feed.stale.unwrap_or(defaults.stale);
        defaults.max_stale_percent =
            percent(feed.max_stale_percent, "[feed]")?.unwrap_or(defaults.max_stale_percent);
        defaults.reapply_days = days(feed.reapply_days, "[feed]")?;
        for (i, name) in feed.precedence.iter().enumerate() {
            check_source_name(name).map_err(|e| invalid(format!("precedence: {e}")))?;
            if feed.precedence[..i].contains(name) {
                return Err(invalid(format!("precedence names `{name}` twice")));
            }
        }
        for (i, column) in feed.match_also.iter().enumerate() {
            if !columns.contains(&column.as_str()) {
                return Err(invalid(format!(
                    "match_also column `{column}` is not a column"
                )));
            }
            if feed.match_also[..i].contains(column) {
                return Err(invalid(format!("match_also names `{column}` twice")));
            }
        }
        let mut overrides = BTreeMap::new();
        for (name, spec) in sources {
            check_source_name(&name).map_err(|e| invalid(format!("[sources.{name}]: {e}")))?;
            let table = format!("[sources.{name}]");
            overrides.insert(
                name,
                Overrides {
                    mode: spec.mode,
                    stale: spec.stale,
                    max_stale_percent: percent(spec.max_stale_percent, &table)?,
                    reapply_days: days(spec.reapply_days, &table)?,
                },
            );
        }
        Ok(Feed {
            defaults,
            overrides,
            precedence: feed.precedence,
            match_also: feed.match_also,
        })
    }
}

fn invalid(message: String) -> SchemaError {
    SchemaError::Invalid(message)
}

fn percent(value: Option<i64>, table: &str) -> Result<Option<u8>, SchemaError> {
    value
        .map(|p| {
            u8::try_from(p).ok().filter(|p| *p <= 100).ok_or_else(|| {
                invalid(format!(
                    "{table} max_stale_percent {p} is not a percentage (0 to 100)"
                ))
            })
        })
        .transpose()
}

fn days(value: Option<i64>, table: &str) -> Result<Option<u16>, SchemaError> {
    value
        .map(|d| {
            u16::try_from(d)
                .ok()
                .filter(|d| (1..=3650).contains(d))
                .ok_or_else(|| invalid(format!("{table} reapply_days {d} is not 1 to 3650")))
        })
        .transpose()
}

/// Longest source name: it becomes part of document field names (`_sources.<name>`).
pub const MAX_SOURCE_NAME: usize = 64;

/// A source name becomes part of field names (`_sources.<name>`, `_provenance`): letters, digits,
/// `-` and `_` only, 1 to [`MAX_SOURCE_NAME`] characters.
pub fn check_source_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > MAX_SOURCE_NAME
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "source name `{name}` must be 1 to {MAX_SOURCE_NAME} of the characters A-Za-z0-9_-"
        ));
    }
    Ok(())
}

/// A source's overrides as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Overrides {
    mode: Option<Mode>,
    stale: Option<Stale>,
    max_stale_percent: Option<u8>,
    reapply_days: Option<u16>,
}

/// The `[feed]` table as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FeedSpec {
    mode: Option<Mode>,
    stale: Option<Stale>,
    max_stale_percent: Option<i64>,
    reapply_days: Option<i64>,
    #[serde(default)]
    precedence: Vec<String>,
    #[serde(default)]
    match_also: Vec<String>,
}

/// A `[sources.<name>]` table as written. Its `format` table belongs to the file-format settings
/// and is read there, not here.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SourceSpec {
    mode: Option<Mode>,
    stale: Option<Stale>,
    max_stale_percent: Option<i64>,
    reapply_days: Option<i64>,
    #[serde(default, rename = "format")]
    _format: Option<serde::de::IgnoredAny>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Doc {
        feed: Option<FeedSpec>,
        #[serde(default)]
        sources: BTreeMap<String, SourceSpec>,
    }

    fn parse(text: &str) -> Result<Feed, String> {
        let doc: Doc = toml::from_str(text).map_err(|e| e.to_string())?;
        Feed::from_spec(doc.feed, doc.sources, &["sku", "gtin", "price"]).map_err(|e| e.to_string())
    }

    #[test]
    fn without_a_feed_table_every_source_is_incremental_deactivate_ten_percent() {
        let feed = parse("").unwrap();
        assert_eq!(feed.for_source("anyone"), SourcePolicy::default());
        assert_eq!(
            SourcePolicy::default(),
            SourcePolicy {
                mode: Mode::Incremental,
                stale: Stale::Deactivate,
                max_stale_percent: 10,
                reapply_days: None,
            }
        );
        assert_eq!(feed.rank("anyone"), 0);
    }

    #[test]
    fn source_tables_override_the_feed_table_field_by_field() {
        let feed = parse(
            r#"
            [feed]
            mode = "incremental"
            stale = "keep"
            max_stale_percent = 20
            precedence = ["erp", "supplier-a"]
            match_also = ["gtin"]
            [sources.erp]
            mode = "full"
            [sources.erp.format]
            delimiter = ";"
            [sources.supplier-a]
            stale = "delete"
            max_stale_percent = 0
            "#,
        )
        .unwrap();
        let erp = feed.for_source("erp");
        assert_eq!(
            (erp.mode, erp.stale, erp.max_stale_percent),
            (Mode::Full, Stale::Keep, 20)
        );
        let a = feed.for_source("supplier-a");
        assert_eq!(
            (a.mode, a.stale, a.max_stale_percent),
            (Mode::Incremental, Stale::Delete, 0)
        );
        assert_eq!(feed.for_source("other").stale, Stale::Keep);
        assert_eq!(
            (feed.rank("erp"), feed.rank("supplier-a"), feed.rank("x")),
            (0, 1, 2)
        );
        assert_eq!(feed.match_also, ["gtin"]);
    }

    #[test]
    fn mistakes_are_refused_with_what_is_wrong() {
        for (text, expected) in [
            (
                "[feed]\nprecedence = [\"a\", \"b\", \"a\"]",
                "precedence names `a` twice",
            ),
            (
                "[feed]\nmatch_also = [\"ean\"]",
                "match_also column `ean` is not a column",
            ),
            (
                "[feed]\nmax_stale_percent = 101",
                "max_stale_percent 101 is not a percentage",
            ),
            (
                "[sources.x]\nmax_stale_percent = -1",
                "[sources.x] max_stale_percent -1",
            ),
            ("[feed]\nmode = \"partial\"", "unknown variant `partial`"),
            ("[feed]\nstale = \"purge\"", "unknown variant `purge`"),
            ("[sources.x]\ncolour = 1", "unknown field `colour`"),
            ("[feed]\ncolour = 1", "unknown field `colour`"),
            (
                "[sources.\"a.b\"]\nmode = \"full\"",
                "source name `a.b` must be",
            ),
            ("[feed]\nprecedence = [\"\"]", "source name `` must be"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn modes_read_from_metadata_in_any_case_and_serialise_kebab_case() {
        assert_eq!(Mode::from_metadata(" Full ").unwrap(), Mode::Full);
        assert_eq!(Mode::from_metadata("DRY-RUN").unwrap(), Mode::DryRun);
        assert_eq!(
            Mode::from_metadata("incremental").unwrap(),
            Mode::Incremental
        );
        let err = Mode::from_metadata("dryrun").unwrap_err();
        assert!(err.contains("`dryrun`"), "{err}");
        assert_eq!(serde_json::to_value(Mode::DryRun).unwrap(), "dry-run");
        assert_eq!(
            serde_json::from_value::<Mode>("full".into()).unwrap(),
            Mode::Full
        );
    }
}
