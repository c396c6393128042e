//! CloudWatch metrics as Embedded Metric Format log lines: no API call, no latency, no permission.
//! [`EMITTED`] lists every metric the functions write; the dashboard in infra/template.yaml plots
//! only metrics it lists (tests/dashboard.rs), and [`Metrics`] refuses, in debug builds, to write
//! one it does not list, so the code and the dashboard cannot drift apart.

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "chute";

/// One metric as CloudWatch stores it: the step whose line carries it (its `Step` dimension's
/// value), its name and its dimension names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Emitted {
    pub step: &'static str,
    pub name: &'static str,
    pub dimensions: &'static [&'static str],
}

const BY_STEP: &[&str] = &["Step"];
const BY_STEP_AND_STATUS: &[&str] = &["Step", "Status"];

const fn by_step(step: &'static str, name: &'static str) -> Emitted {
    Emitted {
        step,
        name,
        dimensions: BY_STEP,
    }
}

/// Every metric the functions emit.
pub const EMITTED: &[Emitted] = &[
    by_step("validate", "RowsRead"),
    by_step("validate", "Chunks"),
    by_step("validate", "Duration"),
    by_step("transform", "RowsRead"),
    by_step("transform", "RowsRejected"),
    // One value per chunk: its Maximum is the slowest chunk.
    by_step("transform", "Duration"),
    by_step("import", "RowsWritten"),
    by_step("import", "RowsUnchanged"),
    by_step("import", "RowsRefused"),
    // 1 when the invocation ran out of its time budget and the chunk continues in the next one.
    by_step("import", "Continuations"),
    by_step("import", "Duration"),
    by_step("report", "RowsRead"),
    by_step("report", "RowsRejected"),
    by_step("report", "RowsWritten"),
    by_step("report", "StaleMarked"),
    by_step("report", "Duration"),
    // 1 per finished run, on a line of its own with the run's status as a second dimension.
    Emitted {
        step: "report",
        name: "Runs",
        dimensions: BY_STEP_AND_STATUS,
    },
];

/// The metrics of one step of one run, written as one EMF line with the `Step` dimension (and any
/// added with [`Metrics::dimension`]).
pub struct Metrics {
    step: &'static str,
    line: serde_json::Map<String, serde_json::Value>,
    dimensions: Vec<&'static str>,
    definitions: Vec<serde_json::Value>,
}

impl Metrics {
    pub fn new(step: &'static str, run_id: &str) -> Self {
        let mut line = serde_json::Map::new();
        line.insert("Step".into(), step.into());
        line.insert("run_id".into(), run_id.into());
        Metrics {
            step,
            line,
            dimensions: vec!["Step"],
            definitions: Vec::new(),
        }
    }

    /// Another dimension of every metric on this line.
    pub fn dimension(mut self, name: &'static str, value: &str) -> Self {
        self.line.insert(name.into(), value.into());
        self.dimensions.push(name);
        self
    }

    /// A count of rows (or chunks, runs, products).
    pub fn count(self, name: &'static str, value: u64) -> Self {
        self.metric(name, value, "Count")
    }

    /// The step's `Duration` in milliseconds.
    pub fn duration(self, ms: u64) -> Self {
        self.metric("Duration", ms, "Milliseconds")
    }

    fn metric(mut self, name: &'static str, value: u64, unit: &str) -> Self {
        debug_assert!(
            EMITTED.iter().any(|e| e.step == self.step
                && e.name == name
                && e.dimensions == self.dimensions.as_slice()),
            "metric {name} of step {} by {:?} is not in EMITTED",
            self.step,
            self.dimensions
        );
        self.definitions
            .push(serde_json::json!({"Name": name, "Unit": unit}));
        self.line
            .insert(name.into(), serde_json::json!(value as f64));
        self
    }

    /// Prints the line to stdout, where the Lambda log stream picks it up.
    pub fn emit(mut self) {
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.line.insert(
            "_aws".into(),
            serde_json::json!({
                "Timestamp": timestamp,
                "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [self.dimensions], "Metrics": self.definitions}]
            }),
        );
        println!("{}", serde_json::Value::Object(self.line));
    }
}
