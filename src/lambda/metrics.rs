//! CloudWatch metrics as Embedded Metric Format log lines: no API call, no latency, no permission.

/// The metrics of one step of one run, written as one EMF line with the `Step` dimension.
pub struct Metrics {
    line: serde_json::Map<String, serde_json::Value>,
    definitions: Vec<serde_json::Value>,
}

impl Metrics {
    pub fn new(step: &str, run_id: &str) -> Self {
        let mut line = serde_json::Map::new();
        line.insert("Step".into(), step.into());
        line.insert("run_id".into(), run_id.into());
        Metrics {
            line,
            definitions: Vec::new(),
        }
    }

    /// A count of rows (or chunks).
    pub fn count(self, name: &str, value: u64) -> Self {
        self.metric(name, value, "Count")
    }

    /// The step's `Duration` in milliseconds.
    pub fn duration(self, ms: u64) -> Self {
        self.metric("Duration", ms, "Milliseconds")
    }

    fn metric(mut self, name: &str, value: u64, unit: &str) -> Self {
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
                "CloudWatchMetrics": [{"Namespace": "chute", "Dimensions": [["Step"]], "Metrics": self.definitions}]
            }),
        );
        println!("{}", serde_json::Value::Object(self.line));
    }
}
