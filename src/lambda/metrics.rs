//! CloudWatch metrics as Embedded Metric Format log lines: no API call, no latency, no permission.

/// Unit of a count metric.
pub const COUNT: &str = "Count";
/// Unit of a duration metric.
pub const MILLISECONDS: &str = "Milliseconds";

/// Writes `(name, value, unit)` metrics of one step as one EMF line, with the `Step` dimension.
pub fn emit_metrics(step: &str, run_id: &str, metrics: &[(&str, f64, &str)]) {
    let mut line = serde_json::Map::new();
    let definitions: Vec<serde_json::Value> = metrics
        .iter()
        .map(|(name, _, unit)| serde_json::json!({"Name": name, "Unit": unit}))
        .collect();
    line.insert(
        "_aws".into(),
        serde_json::json!({
            "Timestamp": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
            "CloudWatchMetrics": [{"Namespace": "chute", "Dimensions": [["Step"]], "Metrics": definitions}]
        }),
    );
    line.insert("Step".into(), step.into());
    line.insert("run_id".into(), run_id.into());
    for (name, value, _) in metrics {
        line.insert((*name).into(), serde_json::json!(value));
    }
    println!("{}", serde_json::Value::Object(line));
}
