//! The fleet view against real parts: the alert rules pass `promtool check rules`; the Grafana
//! dashboard is importable, with a Prometheus datasource variable; and a real Prometheus
//! (Debian's package), scraping a running rsttrace while the resets and timeouts the panels and
//! alerts are about happen, has data for every expression the dashboard and the rules use.
//!
//! Expressions are read from the files themselves (the dashboard's JSON; the rules as
//! Prometheus loaded them, from its API), so a new panel or rule is covered without a change
//! here. An alert is `EXPRESSION OP NUMBER` (the rules file says so): the test queries the
//! EXPRESSION, which has data whenever the alert can be judged, while the comparison holds
//! only in a surge. Each series selector in an expression must have data on its own too, so
//! that one branch of an `or` cannot hide another that selects nothing. Grafana's variables
//! are filled in as Grafana does with every host selected and a one-minute range and step.
use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use rsttrace_tests::{
    free_local_port, grafana,
    prometheus::Prometheus,
    promql::{split_threshold, vector_selectors},
    overflow_accept_queue, refused_storm, require_root, workspace_root, Family, Net, Stim, Tracer,
};
use serde_json::Value;

const DASHBOARD: &str = "deploy/grafana/rsttrace.json";
const RULES: &str = "deploy/prometheus/rsttrace-rules.yml";
const CAUSES: &str = "docs/causes.md";
/// The scrape job name the rules file requires.
const JOB: &str = "rsttrace";
/// What `$__rate_interval` and `$__range` stand for: long enough for two scrapes a second
/// apart, short enough to be all this test's.
const WINDOW: &str = "1m";
/// Prometheus hands new targets to its scrapers every 5 s, then scrapes every second: data
/// is there within seconds of the last reset.
const DATA_LIMIT: Duration = Duration::from_secs(40);
const T: Duration = Duration::from_secs(20);
/// The causes the scenarios below provoke, as the metrics count them.
const RESET_CAUSES: [&str; 6] = ["no_listener", "refused", "app_abort_linger0", "injected", "listen_overflow", "keepalive_timeout"];
const ABORT_CAUSES: [&str; 2] = ["syn_timeout", "retransmit_timeout"];

fn read(relative: &str) -> String {
    let path = workspace_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"))
}

#[test]
fn rules_pass_promtool_check() {
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(workspace_root().join(RULES))
        .output()
        .expect("cannot run `promtool`: `cargo xtask setup` installs Debian's prometheus package");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("SUCCESS"), "promtool check rules {RULES}:\n{text}");
}

#[test]
fn dashboard_imports_with_a_prometheus_datasource_variable() {
    let dashboard = dashboard();
    // Import gives the dashboard its own id; the uid keeps links stable across imports.
    assert!(dashboard["id"].is_null(), "id must be null for import: {}", dashboard["id"]);
    assert!(dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()) && dashboard["title"].is_string());
    let datasource = grafana::variables(&dashboard)
        .iter()
        .find(|v| v["type"] == "datasource" && v["query"] == "prometheus")
        .and_then(|v| v["name"].as_str())
        .expect("no datasource variable of type prometheus");
    let reference = format!("${{{datasource}}}");
    let mut ids = std::collections::HashSet::new();
    for panel in grafana::panels(&dashboard) {
        let title = panel["title"].as_str().unwrap_or("?");
        assert!(ids.insert(panel["id"].as_u64().unwrap_or_else(|| panic!("{title}: no id"))), "{title}: id used twice");
        let grid = &panel["gridPos"];
        let (x, w, h) = (grid["x"].as_u64(), grid["w"].as_u64(), grid["h"].as_u64());
        assert!(grid["y"].is_u64() && h.is_some_and(|h| h > 0), "{title}: {grid}");
        assert!(x.zip(w).is_some_and(|(x, w)| w > 0 && x + w <= 24), "{title}: wider than Grafana's 24 columns: {grid}");
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], reference.as_str(), "{title}: not on the datasource variable");
        let targets = panel["targets"].as_array().unwrap_or_else(|| panic!("{title}: no targets"));
        assert!(!targets.is_empty(), "{title}: no targets");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], reference.as_str(), "{title}: a target not on the datasource variable");
            assert!(t["expr"].as_str().is_some_and(|e| !e.is_empty()), "{title}: a target without an expression");
        }
    }
}

/// The alerts as Prometheus loaded them: each one's name, expression and annotations.
fn loaded_alerts(prometheus: &Prometheus) -> Vec<Value> {
    let groups = prometheus.api("/api/v1/rules");
    let alerts: Vec<Value> = groups["groups"].as_array().into_iter().flatten().flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default()).filter(|r| r["type"] == "alerting").collect();
    assert!(!alerts.is_empty(), "no alerting rule loaded from {RULES}: {groups}");
    alerts
}

fn rules_path() -> PathBuf {
    workspace_root().join(RULES)
}

/// The values a `cause="…"` or `cause=~"a|b"` matcher in `expr` selects.
fn causes_selected(expr: &str) -> Vec<String> {
    expr.match_indices("cause=")
        .filter_map(|(at, m)| {
            let rest = expr[at + m.len()..].trim_start_matches('~').strip_prefix('"')?;
            Some(rest[..rest.find('"')?].split('|').map(str::to_string).collect::<Vec<_>>())
        })
        .flatten()
        .collect()
}

#[test]
fn every_alert_points_to_its_section_of_causes_md() {
    let causes = read(CAUSES);
    // Causes are `###` sections; rsttrace's own alerts (events_lost, rsttrace_down) `##` ones.
    let sections: Vec<&str> = causes.lines().filter(|l| l.starts_with("## ") || l.starts_with("### ")).map(|l| l.trim_start_matches('#').trim()).collect();
    let prometheus = Prometheus::start(JOB, &[], &[rules_path()]);
    let alerts = loaded_alerts(&prometheus);
    for alert in &alerts {
        let name = alert["name"].as_str().unwrap();
        let annotations = &alert["annotations"];
        assert!(annotations["summary"].as_str().is_some_and(|s| !s.is_empty()), "{name}: no summary");
        let description = annotations["description"].as_str().unwrap_or_else(|| panic!("{name}: no description"));
        let link = description.split_whitespace().find_map(|w| w.split("docs/causes.md#").nth(1)).unwrap_or_else(|| panic!("{name}: the description names no section of {CAUSES}: {description}"));
        // A link templated on the cause label stands for every cause the expression selects.
        let linked: Vec<String> = if link.starts_with("{{") {
            assert!(description.contains("docs/causes.md#{{ $labels.cause }}"), "{name}: {description}");
            causes_selected(alert["query"].as_str().unwrap())
        } else {
            vec![link.trim_end_matches(|c: char| !c.is_alphanumeric() && c != '_').to_string()]
        };
        assert!(!linked.is_empty(), "{name}: {description}");
        for section in linked {
            assert!(sections.contains(&section.as_str()), "{name} points to docs/causes.md#{section}, which is not a section there ({sections:?})");
        }
    }
    // What the rules must alert on: forged resets, accept-queue overflows, the three timeouts,
    // lost events and an agent that does not answer.
    let queries: String = alerts.iter().map(|a| a["query"].as_str().unwrap().to_string()).collect::<Vec<_>>().join("\n");
    for needed in ["origin=\"network\"", "listen_overflow", "keepalive_timeout", "retransmit_timeout", "syn_timeout", "rsttrace_events_lost_total", "up{job=\"rsttrace\"} == 0"] {
        assert!(queries.contains(needed), "no alert on `{needed}` in:\n{queries}");
    }
}

fn listen(net: &Net, port: &str, mode: &str) -> Stim {
    let s = Stim::spawn(&net.server, &["listen", &net.server_addr(Family::V4), port, mode]);
    s.expect_line("ready", T);
    s
}

fn client(net: &Net, port: &str, opts: &[&str]) -> Stim {
    let addr = net.server_addr(Family::V4);
    let args: Vec<&str> = ["connect", addr.as_str(), port].into_iter().chain(opts.iter().copied()).collect();
    Stim::spawn(&net.client, &args)
}

/// A server that reads and then closes with SO_LINGER 0: app_abort_linger0.
fn abort_with_linger0(net: &Net) {
    let _server = listen(net, "8081", "linger0");
    let c = client(net, "8081", &["--send", "10"]);
    assert_eq!(c.expect_line("errno", T), "errno 104");
}

/// The server's firewall answers an established connection's data with a forged reset:
/// injected, origin network.
fn forge_a_reset_in_the_path(net: &Net) {
    let _server = listen(net, "8082", "hold");
    let mut c = client(net, "8082", &["--send", "100", "--wait-go"]);
    c.expect_line("ready", T);
    let _reject = net.server_filter("input", "tcp dport 8082 reject with tcp reset");
    c.go();
    assert_eq!(c.expect_line("errno", T), "errno 104");
}

/// keepalive_timeout, retransmit_timeout and syn_timeout at once, against a server whose
/// firewall starts dropping everything: about three seconds.
fn time_out_connections(net: &Net) {
    let _server = listen(net, "8084", "hold");
    let mut keepalive = client(net, "8084", &["--keepalive", "1,1,2", "--wait-go"]);
    let mut retransmit = client(net, "8084", &["--user-timeout", "1500", "--send", "100", "--wait-go"]);
    keepalive.expect_line("ready", T);
    retransmit.expect_line("ready", T);
    let _drop = net.server_filter("input", "tcp dport 8084 drop");
    keepalive.go();
    retransmit.go();
    let syn = client(net, "8084", &["--syncnt", "1"]);
    for c in [&keepalive, &retransmit, &syn] {
        assert_eq!(c.expect_line("errno", T), "errno 110");
    }
}

/// Wait until `expr` has data; a query Prometheus refuses fails at once.
fn wait_for_data(prometheus: &Prometheus, what: &str, expr: &str, deadline: Instant) -> Vec<Value> {
    loop {
        match prometheus.query(expr) {
            Err(e) => panic!("{what}: Prometheus refuses `{expr}`: {e}"),
            Ok(result) if !result.is_empty() => return result,
            Ok(_) if Instant::now() > deadline => panic!(
                "{what}: no data for `{expr}` after the scenarios; the counters hold:\n{}\nprometheus log:\n{}",
                counted_so_far(prometheus),
                prometheus.log()
            ),
            Ok(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// Every reset series Prometheus has, one line each: what a missing one was counted as instead.
fn counted_so_far(prometheus: &Prometheus) -> String {
    let series = prometheus.query("rsttrace_resets_total").unwrap_or_else(|e| vec![Value::String(e)]);
    series.iter().map(|s| format!("  {} = {}", s["metric"], s["value"][1])).collect::<Vec<_>>().join("\n")
}

/// Wait until `expr`, and each series selector in it on its own, has data: a branch of an `or`
/// that selects nothing (a misspelt cause) fails too.
fn assert_has_data(prometheus: &Prometheus, what: &str, expr: &str, deadline: Instant) {
    wait_for_data(prometheus, what, expr, deadline);
    let selectors = vector_selectors(expr);
    assert!(!selectors.is_empty(), "{what}: reads no series: {expr}");
    for selector in selectors {
        wait_for_data(prometheus, &format!("{what}, selector"), &selector, deadline);
    }
}

/// The values of `label` across a query's series.
fn label_values(result: &[Value], label: &str) -> Vec<String> {
    result.iter().filter_map(|s| s["metric"][label].as_str().map(str::to_string)).collect()
}

fn panel_expr(dashboard: &Value, title: &str) -> String {
    let query = grafana::panel_queries(dashboard).into_iter().find(|q| q.panel == title).unwrap_or_else(|| panic!("no panel `{title}` in {DASHBOARD}"));
    grafana::fill_in(&query.expr, dashboard, WINDOW)
}

#[test]
fn a_live_rsttrace_gives_every_dashboard_and_alert_expression_data() {
    require_root();
    let live = format!("127.0.0.1:{}", free_local_port());
    // A target where nothing listens: an agent that is down.
    let silent = format!("127.0.0.1:{}", free_local_port());
    let tracer = Tracer::start(&["--metrics", &live, "--max-rate", "0"]);
    let prometheus = Prometheus::start(JOB, &[live.clone(), silent.clone()], &[rules_path()]);
    let net = Net::new(80);
    refused_storm(&net, Family::V4, 3, "9");
    abort_with_linger0(&net);
    forge_a_reset_in_the_path(&net);
    // Dropped at once: its queued connections are reset as the listener closes.
    overflow_accept_queue(&net, Family::V4, "8083");
    time_out_connections(&net);
    let deadline = Instant::now() + DATA_LIMIT;

    let dashboard = dashboard();
    let mut checked = 0;
    for variable in grafana::variables(&dashboard).iter().filter(|v| v["type"] == "query") {
        let (metric, label) = grafana::label_values_query(variable).unwrap();
        let result = wait_for_data(&prometheus, &format!("variable {}", variable["name"]), &metric, deadline);
        assert!(label_values(&result, &label).contains(&live), "variable {}: {live} not among {result:?}", variable["name"]);
        checked += 1;
    }
    for query in grafana::panel_queries(&dashboard) {
        let expr = grafana::fill_in(&query.expr, &dashboard, WINDOW);
        assert!(!expr.contains('$'), "panel {}: a variable not filled in: {expr}", query.panel);
        assert_has_data(&prometheus, &format!("panel {}", query.panel), &expr, deadline);
        checked += 1;
    }
    for alert in loaded_alerts(&prometheus) {
        let name = alert["name"].as_str().unwrap();
        let threshold = split_threshold(alert["query"].as_str().unwrap()).unwrap_or_else(|e| panic!("alert {name}: {e}"));
        assert_has_data(&prometheus, &format!("alert {name}"), threshold.lhs, deadline);
        checked += 1;
    }
    eprintln!("fleet: {checked} expressions have data");

    // The dashboard shows each cause the scenarios provoked, under the origin it has.
    let by_cause = label_values(&wait_for_data(&prometheus, "by cause", &panel_expr(&dashboard, "Resets by cause /s"), deadline), "cause");
    for cause in RESET_CAUSES {
        assert!(by_cause.iter().any(|c| c == cause), "`Resets by cause` has no {cause}: {by_cause:?}");
    }
    let aborts = label_values(&wait_for_data(&prometheus, "aborts", &panel_expr(&dashboard, "Aborts by cause /s"), deadline), "cause");
    for cause in ABORT_CAUSES {
        assert!(aborts.iter().any(|c| c == cause), "`Aborts by cause` has no {cause}: {aborts:?}");
    }
    let origins = label_values(&wait_for_data(&prometheus, "by origin", &panel_expr(&dashboard, "Resets by origin /s"), deadline), "origin");
    for origin in ["stack", "peer", "application", "network"] {
        assert!(origins.iter().any(|o| o == origin), "`Resets by origin` has no {origin}: {origins:?}");
    }
    let comms = label_values(&wait_for_data(&prometheus, "top processes", &panel_expr(&dashboard, "Top processes by resets"), deadline), "comm");
    assert!(comms.iter().any(|c| c == "rststim"), "`Top processes` lacks the scenarios' rststim: {comms:?}");

    // Prometheus evaluated every rule without an error.
    loop {
        let alerts = loaded_alerts(&prometheus);
        if alerts.iter().all(|a| a["health"] != "unknown") {
            for a in &alerts {
                assert_eq!(a["health"], "ok", "alert {} fails to evaluate: {}", a["name"], a["lastError"]);
            }
            break;
        }
        assert!(Instant::now() < deadline, "rules never evaluated: {alerts:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    // The silent target is an agent down: RsttraceDown is pending for it (it fires after its
    // 5 minutes) and not for the live one.
    let down_for = |instance: &str| {
        let alerts = prometheus.api("/api/v1/alerts");
        alerts["alerts"].as_array().into_iter().flatten().find(|a| a["labels"]["alertname"] == "RsttraceDown" && a["labels"]["instance"] == instance).cloned()
    };
    let down = loop {
        if let Some(alert) = down_for(&silent) {
            break alert;
        }
        assert!(Instant::now() < deadline, "RsttraceDown never became active for {silent}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(down["state"], "pending", "{down}");
    assert!(down_for(&live).is_none(), "RsttraceDown for the live agent {live}");

    drop(prometheus);
    // rsttrace ran and stops cleanly throughout.
    tracer.stop();
}
