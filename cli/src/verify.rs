//! `chute verify --source NAME`: a source's committed snapshot (delta import) against the
//! database, and `--repair`. The comparison and the repair are the library's
//! ([`chute::store::Store::verify_source`]); this prints what they found.

use std::process::ExitCode;

use chute::app::Env;
use chute::store::{Verified, VerifyRequest};
use serde::Serialize;

use crate::check::load_schema;
use crate::history::runtime;
use crate::{Failure, Outcome};

pub const LONG_ABOUT: &str = "\
Compare a feed source's snapshot (what delta import recorded that the source last supplied: key, \
content hash, and the run and row it came from) with what the database holds, and list the drift: \
products edited or deleted by hand since.

Per snapshot piece, a checksum of (key, the source's claim hash `_sources.<source>.hash`) is \
computed on both sides first and the pieces that differ are named; the content comparison then \
covers every product of the snapshot whatever the checksums say (a field edited by hand leaves \
the claim as it was). A product drifted when:
    missing         no document has its key
    claim-missing   the document has no _sources.<source>
    claim-changed   _sources.<source>.hash is not the snapshot's content hash
    field           a field the source's row set, whose _provenance is this source, holds another \
value (a field another source supplied is that source's, not drift)
Field values come from the row's staged documents (staging/<run>/chunk-N.bson). When a run's \
staged documents are gone (staging expires after StagingRetentionDays), its products' claims are \
checked only, and the output says so.

--repair re-applies exactly the drifted products: their staged rows are written again through \
the importer's writer as their run (precedence still decides each field; a missing document is \
inserted again), then the source is verified again and both results are printed. A product whose \
staged row is gone cannot be repaired here: sending the source's file again with object metadata \
chute-mode: reapply restores a deleted one, not an edited field. A repair holds the source's lease while it writes, like a run: it is refused while a \
run of the source is under way (a plain verify notes such a run: its writes show as drift until \
it commits its snapshot).

OUTPUT
    one line per drift (key, kind, field, stored value, snapshot value, run and row), then the \
pieces whose checksums differ, then a summary with counts and time. --json prints the result \
(with `after_repair` for --repair).

EXIT STATUS
    0   no drift, or every drift repaired
    1   drift found (and not repaired, or some left after --repair)
    2   usage error, no snapshot of the source, a run of the source under way (--repair), or an \
environment problem (MongoDB or S3 unreachable, an unreadable snapshot)

EXAMPLES
    eval \"$(scripts/stack env)\"
    chute verify --source erp --schema catalog
    chute verify --source erp --schema catalog --repair
    chute --json verify --source erp | jq '.drift[] | select(.kind == \"field\")'";

#[derive(clap::Args)]
pub struct Args {
    /// The feed source whose snapshot is compared (the first folder under incoming/, or the
    /// object's chute-source metadata).
    #[arg(long, value_name = "NAME")]
    pub source: String,
    /// Schema name (default: CHUTE_SCHEMA, else products): gives the collection and key.
    #[arg(long, value_name = "NAME")]
    pub schema: Option<String>,
    /// Re-apply the drifted products from their staged rows, then verify again.
    #[arg(long)]
    pub repair: bool,
}

/// What `--json` prints: the comparison, and with `--repair` the one after it.
#[derive(Debug, Serialize)]
pub struct VerifyOutput {
    #[serde(flatten)]
    pub verified: Verified,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_repair: Option<Verified>,
}

impl VerifyOutput {
    /// 0 when the database holds what the snapshot says (at the end), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        let last = self.after_repair.as_ref().unwrap_or(&self.verified);
        u8::from(!last.clean())
    }
}

pub fn run(args: &Args, json: bool) -> Outcome {
    let output = runtime()?.block_on(async {
        let env = Env::load().await?;
        let schema = load_schema(&env.config, args.schema.as_deref(), None)?;
        let store = env.store().await?;
        let mut request = VerifyRequest {
            schema: &schema,
            source: &args.source,
            staging_prefix: &env.config.staging_prefix,
            repair: args.repair,
        };
        let Some(verified) = store.verify_source(&env.blob, &request).await? else {
            return Err(Failure(format!(
                "source `{}` has no snapshot in collection `{}` (delta import records one when a \
                 run of the source commits)",
                args.source, schema.collection
            )));
        };
        let after_repair = if args.repair && !verified.clean() {
            request.repair = false;
            store.verify_source(&env.blob, &request).await?
        } else {
            None
        };
        Ok::<_, Failure>(VerifyOutput {
            verified,
            after_repair,
        })
    })?;
    if json {
        crate::output::json(&output);
    } else {
        crate::output::print(&render(&output));
    }
    Ok(ExitCode::from(output.exit_code()))
}

fn value(v: &Option<String>) -> String {
    v.as_deref()
        .map_or_else(|| "(absent)".into(), |s| format!("`{s}`"))
}

fn seconds(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// The drift lines, the differing pieces and the summary of one comparison.
fn render_one(v: &Verified) -> String {
    let mut out = String::new();
    for d in &v.drift {
        let what = match (&d.field, d.kind.as_str()) {
            (Some(field), _) => format!("field {field}"),
            (None, kind) => kind.to_string(),
        };
        let values = match d.kind {
            chute::store::DriftKind::Missing => String::new(),
            _ => format!(
                ": stored {}, snapshot {}",
                value(&d.stored),
                value(&d.snapshot)
            ),
        };
        out += &format!(
            "{}  {what}{values}  (run {}, row {})\n",
            d.key, d.run_id, d.row
        );
    }
    if v.unlisted > 0 {
        out += &format!("... and {} more drifts not listed\n", v.unlisted);
    }
    if let Some(run) = &v.running {
        out += &format!(
            "note: run {run} of this source is under way: its writes show as drift until it \
             commits its snapshot\n"
        );
    }
    let differing: Vec<String> = v
        .pieces
        .iter()
        .filter(|p| p.differs)
        .map(|p| format!("{} ({} products)", p.piece, p.entries))
        .collect();
    out += &format!(
        "pieces: {} checked, {} with differing claim checksums{}\n",
        v.pieces.len(),
        differing.len(),
        if differing.is_empty() {
            String::new()
        } else {
            format!(": {}", differing.join(", "))
        }
    );
    for c in &v.claims_only {
        out += &format!(
            "claims only: {} products of run {}: {}\n",
            c.products, c.run_id, c.reason
        );
    }
    out += &if v.clean() {
        format!(
            "no drift: {} products of {}/{} checked against the snapshot of run {} in {}\n",
            v.checked,
            v.collection,
            v.source,
            v.snapshot_run,
            seconds(v.duration_ms)
        )
    } else {
        format!(
            "{} of {} products of {}/{} drifted from the snapshot of run {}: {} missing, {} with \
             their claim missing or changed, {} with fields changed; {}\n",
            v.drifted,
            v.checked,
            v.collection,
            v.source,
            v.snapshot_run,
            v.missing,
            v.claims,
            v.fields,
            seconds(v.duration_ms)
        )
    };
    if let Some(r) = &v.repaired {
        out += &format!(
            "repaired: {} products re-applied ({} inserted, {} updated, {} unchanged, {} refused), \
             {} not repairable (staged rows gone)\n",
            r.reapplied,
            r.counts.inserted,
            r.counts.updated,
            r.counts.unchanged,
            r.counts.refused,
            r.unrepairable
        );
        for refusal in &r.refusals {
            out += &format!("refused: {refusal}\n");
        }
    }
    out
}

/// The whole text output.
pub fn render(output: &VerifyOutput) -> String {
    let mut out = render_one(&output.verified);
    if let Some(after) = &output.after_repair {
        out += "\nafter repair:\n";
        out += &render_one(after);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chute::store::{Drift, DriftKind, PieceCheck, Repaired};

    fn drifted() -> Verified {
        let mut v = Verified {
            collection: "products".into(),
            source: "erp".into(),
            snapshot_run: "r2".into(),
            pieces: vec![PieceCheck::new(0, 2, 1, 1), PieceCheck::new(1, 3, 1, 2)],
            duration_ms: 1500,
            ..Verified::default()
        };
        v.add(vec![Drift {
            key: "LAMP-1".into(),
            kind: DriftKind::Field,
            field: Some("price".into()),
            stored: Some("5.00".into()),
            snapshot: Some("19.90".into()),
            run_id: "r1".into(),
            row: 3,
        }]);
        v.add(vec![Drift {
            key: "LAMP-2".into(),
            kind: DriftKind::Missing,
            field: None,
            stored: None,
            snapshot: None,
            run_id: "r2".into(),
            row: 4,
        }]);
        for _ in 0..3 {
            v.add(vec![]);
        }
        v
    }

    #[test]
    fn each_drift_is_one_line_then_the_pieces_and_a_summary() {
        let output = VerifyOutput {
            verified: drifted(),
            after_repair: None,
        };
        let text = render(&output);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "LAMP-1  field price: stored `5.00`, snapshot `19.90`  (run r1, row 3)"
        );
        assert_eq!(lines[1], "LAMP-2  missing  (run r2, row 4)");
        assert_eq!(
            lines[2],
            "pieces: 2 checked, 1 with differing claim checksums: 1 (3 products)"
        );
        assert!(lines[3].starts_with("2 of 5 products of products/erp drifted"));
        assert!(lines[3].contains(
            "1 missing, 0 with their claim missing or changed, 1 with fields changed; 1.5 s"
        ));
        assert_eq!(output.exit_code(), 1);
    }

    #[test]
    fn a_repair_prints_what_it_wrote_and_the_check_after_it() {
        let mut verified = drifted();
        verified.repaired = Some(Repaired {
            reapplied: 2,
            counts: chute::run::WriteCounts {
                inserted: 1,
                updated: 1,
                ..Default::default()
            },
            ..Repaired::default()
        });
        let after = Verified {
            checked: 5,
            snapshot_run: "r2".into(),
            ..Verified::default()
        };
        let output = VerifyOutput {
            verified,
            after_repair: Some(after),
        };
        let text = render(&output);
        assert!(text.contains("repaired: 2 products re-applied (1 inserted, 1 updated, 0 unchanged, 0 refused), 0 not repairable"), "{text}");
        assert!(text.contains("\nafter repair:\n"), "{text}");
        assert!(text.contains("no drift: 5 products"), "{text}");
        assert_eq!(output.exit_code(), 0);
        let json = serde_json::to_value(&output).unwrap();
        assert_eq!(json["drifted"], 2);
        assert_eq!(json["drift"][0]["kind"], "field");
        assert_eq!(json["after_repair"]["drifted"], 0);
        assert_eq!(json["repaired"]["counts"]["inserted"], 1);
    }
}
