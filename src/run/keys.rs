//! Every S3 key of a run, in one place: what validate, transform and import stage under
//! `staging/<run>/`, and what the report stores under `reports/<run>/` (both prefixes are
//! configured). Chunk numbers are zero-padded so a listing sorts in chunk order.

/// The keys of one run's objects.
#[derive(Debug, Clone, Copy)]
pub struct RunKeys<'a> {
    staging_prefix: &'a str,
    reports_prefix: &'a str,
    run_id: &'a str,
}

impl<'a> RunKeys<'a> {
    pub fn new(staging_prefix: &'a str, reports_prefix: &'a str, run_id: &'a str) -> Self {
        RunKeys {
            staging_prefix,
            reports_prefix,
            run_id,
        }
    }

    fn staging(&self, name: &str) -> String {
        format!("{}{}/{name}", self.staging_prefix, self.run_id)
    }

    fn chunk(&self, chunk: u32, suffix: &str) -> String {
        self.staging(&format!("chunk-{chunk:05}.{suffix}"))
    }

    fn report_file(&self, name: &str) -> String {
        format!("{}{}/{name}", self.reports_prefix, self.run_id)
    }

    /// `staging/<run>/plan.json`: the [`super::PlanRecord`].
    pub fn plan(&self) -> String {
        self.staging("plan.json")
    }

    /// `staging/<run>/chunks.json`: the Map's items, a JSON array of chunk plans.
    pub fn chunk_list(&self) -> String {
        self.staging("chunks.json")
    }

    /// `staging/<run>/input.csv`: the decoded copy of a file that is not plain UTF-8 CSV.
    pub fn decoded_input(&self) -> String {
        self.staging("input.csv")
    }

    /// `staging/<run>/chunk-00007.bson`: the chunk's staged documents.
    pub fn staged(&self, chunk: u32) -> String {
        self.chunk(chunk, "bson")
    }

    /// `staging/<run>/chunk-00007.digest`: the chunk's `(key, content hash, row)` entries, sorted
    /// ([`crate::delta::entries`]).
    pub fn digest(&self, chunk: u32) -> String {
        self.chunk(chunk, "digest")
    }

    /// `staging/<run>/chunk-00007.transform.json`: the [`super::TransformRecord`].
    pub fn transform_record(&self, chunk: u32) -> String {
        self.chunk(chunk, "transform.json")
    }

    /// `staging/<run>/chunk-00007.import.json`: the [`super::ImportRecord`] of a finished chunk.
    pub fn import_record(&self, chunk: u32) -> String {
        self.chunk(chunk, "import.json")
    }

    /// `staging/<run>/chunk-00007.import-from-<documents>.json`: the refusals of the import
    /// invocation that started at `documents` and ran out of time.
    pub fn refusal_part(&self, chunk: u32, documents: u64) -> String {
        self.chunk(chunk, &format!("import-from-{documents}.json"))
    }

    /// `reports/<run>/report.json`
    pub fn report(&self) -> String {
        self.report_file("report.json")
    }

    /// `reports/<run>/rejects.csv`
    pub fn rejects(&self) -> String {
        self.report_file("rejects.csv")
    }

    /// `reports/<run>/summary.html`
    pub fn summary(&self) -> String {
        self.report_file("summary.html")
    }

    /// `reports/<run>/stale.csv`: every key a full refresh found stale.
    pub fn stale(&self) -> String {
        self.report_file("stale.csv")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runs_keys_sit_under_its_prefixes_in_chunk_order() {
        let keys = RunKeys::new("staging/", "reports/", "run");
        assert_eq!(keys.plan(), "staging/run/plan.json");
        assert_eq!(keys.chunk_list(), "staging/run/chunks.json");
        assert_eq!(keys.decoded_input(), "staging/run/input.csv");
        assert_eq!(keys.staged(7), "staging/run/chunk-00007.bson");
        assert_eq!(keys.digest(7), "staging/run/chunk-00007.digest");
        assert_eq!(
            keys.transform_record(7),
            "staging/run/chunk-00007.transform.json"
        );
        assert_eq!(keys.import_record(7), "staging/run/chunk-00007.import.json");
        assert_eq!(
            keys.refusal_part(7, 2000),
            "staging/run/chunk-00007.import-from-2000.json"
        );
        assert_eq!(keys.report(), "reports/run/report.json");
        assert_eq!(keys.rejects(), "reports/run/rejects.csv");
        assert_eq!(keys.summary(), "reports/run/summary.html");
        assert_eq!(keys.stale(), "reports/run/stale.csv");
        assert!(keys.staged(9) < keys.staged(10));
    }
}
