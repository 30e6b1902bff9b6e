//! Reading a Grafana dashboard's JSON: its panels, their PromQL, and its template variables as
//! Grafana would fill them in.
use serde_json::Value;

/// Every panel, the ones nested in rows included.
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// One query of a panel.
#[derive(Debug)]
pub struct PanelQuery {
    pub panel: String,
    pub expr: String,
}

/// The PromQL of every panel's targets, in dashboard order.
pub fn panel_queries(dashboard: &Value) -> Vec<PanelQuery> {
    panels(dashboard)
        .into_iter()
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap_or("?").to_string();
            panel["targets"].as_array().into_iter().flatten().map(move |t| PanelQuery {
                panel: title.clone(),
                expr: t["expr"].as_str().unwrap_or_else(|| panic!("panel {title}: a target without `expr`: {t}")).to_string(),
            })
        })
        .collect()
}

/// The template variables (`templating.list`).
pub fn variables(dashboard: &Value) -> &[Value] {
    dashboard["templating"]["list"].as_array().map_or(&[], Vec::as_slice)
}

/// A query variable's `label_values(METRIC, LABEL)` as (metric, label); any other query form
/// is an error, so that a new kind of variable query is looked at rather than passed over.
pub fn label_values_query(variable: &Value) -> Result<(String, String), String> {
    let query = variable["query"].as_str().or(variable["query"]["query"].as_str()).unwrap_or("");
    let inner = query
        .trim()
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .ok_or_else(|| format!("variable {}: not `label_values(METRIC, LABEL)`: {query}", variable["name"]))?;
    let (metric, label) = inner.rsplit_once(',').ok_or_else(|| format!("variable {}: no label in {query}", variable["name"]))?;
    Ok((metric.trim().to_string(), label.trim().to_string()))
}

/// `expr` as Grafana sends it with every variable at "All" and a time range and step of
/// `window` (`$__rate_interval`, `$__interval`, `$__range`). A variable that has no all-value
/// stays as it is, for the caller to notice.
pub fn fill_in(expr: &str, dashboard: &Value, window: &str) -> String {
    let mut values: Vec<(String, String)> = ["__rate_interval", "__interval", "__range"].iter().map(|v| (v.to_string(), window.to_string())).collect();
    for v in variables(dashboard) {
        if let (Some(name), Some(all)) = (v["name"].as_str(), v["allValue"].as_str()) {
            values.push((name.to_string(), all.to_string()));
        }
    }
    // Longest names first: `$__rate_interval` before a `$__rate` that could prefix it.
    values.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    let mut out = expr.to_string();
    for (name, value) in values {
        out = out.replace(&format!("${{{name}}}"), &value).replace(&format!("${name}"), &value);
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn dashboard() -> Value {
        json!({
            "templating": {"list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus"},
                {"name": "instance", "type": "query", "query": "label_values(up, instance)", "allValue": ".+"},
            ]},
            "panels": [
                {"type": "row", "title": "r", "panels": [{"title": "inner", "targets": [{"expr": "b"}]}]},
                {"title": "outer", "targets": [{"expr": "a"}, {"expr": "c"}]},
            ],
        })
    }

    #[test]
    fn queries_of_rows_nested_panels_are_found() {
        let found: Vec<(String, String)> = panel_queries(&dashboard()).into_iter().map(|q| (q.panel, q.expr)).collect();
        assert_eq!(found, [("inner", "b"), ("outer", "a"), ("outer", "c")].map(|(p, e)| (p.to_string(), e.to_string())));
    }

    #[test]
    fn variables_are_filled_in_as_grafana_does_for_all() {
        let filled = fill_in(r#"rate(x{instance=~"$instance"}[$__rate_interval]) + y{i=~"${instance}"}[$__range]"#, &dashboard(), "1m");
        assert_eq!(filled, r#"rate(x{instance=~".+"}[1m]) + y{i=~".+"}[1m]"#);
    }

    #[test]
    fn only_label_values_variable_queries_are_read() {
        let dashboard = dashboard();
        let vars = variables(&dashboard);
        assert_eq!(label_values_query(&vars[1]).unwrap(), ("up".to_string(), "instance".to_string()));
        assert!(label_values_query(&vars[0]).is_err());
    }
}
