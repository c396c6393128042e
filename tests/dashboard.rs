//! The dashboard in infra/template.yaml plots only metrics the functions emit
//! (`chute::lambda::metrics::EMITTED`: name, `Step` value and dimension names), so renaming a
//! metric in the code without the dashboard (or the reverse) fails here; and the README names
//! every widget.
//!
//! The body is the template's `DashboardBody: !Sub |` block, JSON with `${…}` references to other
//! resources, which cfn-lint checks as CloudFormation; here it is read as the literal block it is.

use chute::lambda::metrics::{EMITTED, NAMESPACE};
use serde_json::Value;

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The JSON of the template's `DashboardBody: !Sub |` literal block.
fn dashboard_body() -> Value {
    let template = std::fs::read_to_string(root().join("infra/template.yaml")).unwrap();
    let mut lines = template.lines();
    let key = lines
        .by_ref()
        .find(|l| l.trim_start().starts_with("DashboardBody: !Sub |"))
        .expect("the template has a DashboardBody literal block");
    let key_indent = key.len() - key.trim_start().len();
    let block: Vec<&str> = lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > key_indent)
        .collect();
    let json = block.join("\n");
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("DashboardBody is not JSON: {e}"))
}

/// One `[namespace, name, dim, value, …, {options}]` line of a widget.
#[derive(Debug)]
struct Plotted {
    namespace: String,
    name: String,
    dimensions: Vec<(String, String)>,
    widget: String,
}

/// Every metric the widgets plot.
fn plotted(body: &Value) -> Vec<Plotted> {
    let mut out = Vec::new();
    for widget in body["widgets"].as_array().expect("widgets") {
        let title = widget["properties"]["title"]
            .as_str()
            .unwrap_or("")
            .to_string();
        for metric in widget["properties"]["metrics"].as_array().expect("metrics") {
            let parts: Vec<&str> = metric
                .as_array()
                .expect("a metric is an array")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert!(
                parts.len() >= 2 && parts.len() % 2 == 0 && !parts.contains(&"."),
                "{title}: write each metric out in full (namespace, name, dimension pairs): {metric}"
            );
            let dimensions = parts[2..]
                .chunks(2)
                .map(|d| (d[0].to_string(), d[1].to_string()))
                .collect();
            out.push(Plotted {
                namespace: parts[0].to_string(),
                name: parts[1].to_string(),
                dimensions,
                widget: title.clone(),
            });
        }
    }
    out
}

#[test]
fn every_chute_metric_the_dashboard_plots_is_one_the_code_emits() {
    let plotted = plotted(&dashboard_body());
    let ours: Vec<&Plotted> = plotted
        .iter()
        .filter(|m| m.namespace == NAMESPACE)
        .collect();
    assert!(ours.len() >= 10, "{ours:?}");
    for Plotted {
        name,
        dimensions,
        widget: title,
        ..
    } in &ours
    {
        let step = dimensions
            .iter()
            .find(|(d, _)| d == "Step")
            .map(|(_, v)| v.as_str());
        let names: Vec<&str> = dimensions.iter().map(|(d, _)| d.as_str()).collect();
        assert!(
            EMITTED.iter().any(|e| e.name == name
                && Some(e.step) == step
                && e.dimensions == names.as_slice()),
            "widget `{title}` plots {name} by {dimensions:?}, which no function emits \
             (src/lambda/metrics.rs, EMITTED)"
        );
    }
    // Runs by status: each status the report can have.
    for status in ["SUCCEEDED", "PARTIAL", "FAILED"] {
        assert!(
            ours.iter().any(|m| m.name == "Runs"
                && m.dimensions
                    .contains(&("Status".to_string(), status.to_string()))),
            "no Runs line for {status}"
        );
    }
}

#[test]
fn the_aws_metrics_name_resources_of_the_stack() {
    let template = std::fs::read_to_string(root().join("infra/template.yaml")).unwrap();
    for Plotted {
        namespace,
        name,
        dimensions,
        widget: title,
    } in plotted(&dashboard_body())
    {
        if namespace == NAMESPACE {
            continue;
        }
        assert!(
            ["AWS/SQS", "AWS/Lambda", "AWS/States"].contains(&namespace.as_str()),
            "{title}: {namespace}"
        );
        for (_, value) in &dimensions {
            let resource = value
                .strip_prefix("${")
                .and_then(|v| v.strip_suffix('}'))
                .map(|v| v.split('.').next().unwrap())
                .unwrap_or_else(|| panic!("{title}: {name} names {value}, not a stack resource"));
            assert!(
                template.contains(&format!("\n  {resource}:\n")),
                "{title}: {name} names {resource}, which the template does not define"
            );
        }
    }
}

#[test]
fn the_readme_names_every_widget() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for widget in dashboard_body()["widgets"].as_array().unwrap() {
        let title = widget["properties"]["title"].as_str().unwrap();
        assert!(
            readme.contains(&format!("| {title} |")),
            "README's dashboard table has no row `| {title} |`"
        );
    }
}
