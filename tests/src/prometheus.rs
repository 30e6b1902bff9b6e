//! A real Prometheus (Debian's `prometheus` package) for one test: its own config, storage and
//! loopback port, killed and removed when the guard drops. Asked through its HTTP API.
use std::{
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{free_local_port, temp_dir::TempDir};

/// How long Prometheus may take to say it is ready (it replays an empty WAL: a second here).
const READY_LIMIT: Duration = Duration::from_secs(30);

pub struct Prometheus {
    child: Child,
    port: u16,
    log: PathBuf,
    /// Config, storage and log; declared last so that it is removed after the process is gone.
    _dir: TempDir,
}

impl Prometheus {
    /// Scrape `targets` (host:port) as job `job` and evaluate `rule_files`, both every second.
    /// The scrape timeout must not exceed the interval, so it is a second too.
    pub fn start(job: &str, targets: &[String], rule_files: &[PathBuf]) -> Self {
        let dir = TempDir::new("prometheus");
        let quoted = |items: Vec<String>| items.iter().map(|i| format!("\"{i}\"")).collect::<Vec<_>>().join(", ");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files: [{}]\n\
             scrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n",
            quoted(rule_files.iter().map(|p| p.display().to_string()).collect()),
            quoted(targets.to_vec()),
        );
        let config_file = dir.join("prometheus.yml");
        std::fs::write(&config_file, config).unwrap();
        let log = dir.join("prometheus.log");
        let port = free_local_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("cannot run `prometheus`: `cargo xtask setup` installs Debian's package");
        let mut prometheus = Prometheus { child, port, log, _dir: dir };
        prometheus.wait_ready();
        prometheus
    }

    fn wait_ready(&mut self) {
        let started = Instant::now();
        while started.elapsed() < READY_LIMIT {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("prometheus exited ({status}):\n{}", self.log());
            }
            if http_get(self.port, "/-/ready").is_some_and(|(status, _)| status == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("prometheus not ready after {READY_LIMIT:?}:\n{}", self.log());
    }

    /// What Prometheus wrote on stderr so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The `data` of a successful API answer (`/api/v1/...`); panics on any other.
    pub fn api(&self, path_and_query: &str) -> Value {
        self.try_api(path_and_query).unwrap_or_else(|e| panic!("GET {path_and_query}: {e}"))
    }

    fn try_api(&self, path_and_query: &str) -> Result<Value, String> {
        let (status, body) = http_get(self.port, path_and_query).ok_or("no answer from prometheus")?;
        let answer: Value = serde_json::from_str(&body).map_err(|e| format!("HTTP {status}, not JSON ({e}): {body}"))?;
        if answer["status"] != "success" {
            return Err(format!("HTTP {status}: {answer}"));
        }
        Ok(answer["data"].clone())
    }

    /// The instant vector `expr` evaluates to now, or the API's error (a bad expression).
    pub fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self.try_api(&format!("/api/v1/query?query={}", percent_encode(expr)))?;
        match data["resultType"].as_str() {
            Some("vector") => Ok(data["result"].as_array().cloned().unwrap_or_default()),
            // A bare number (`1 - 1`) is data too.
            Some("scalar") => Ok(vec![data["result"].clone()]),
            other => Err(format!("unexpected result type {other:?}: {data}")),
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Status and body of a GET to 127.0.0.1:`port`. HTTP/1.0, so that Go's server answers with a
/// plain body up to the closed connection instead of chunks.
pub fn http_get(port: u16, path_and_query: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(stream, "GET {path_and_query} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// `text` as a URL query value: every byte but the unreserved ones as %XX.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::percent_encode;

    #[test]
    fn query_values_keep_only_unreserved_bytes() {
        assert_eq!(percent_encode(r#"sum(x{a=~"b|c"}[1m]) > 0"#), "sum%28x%7Ba%3D~%22b%7Cc%22%7D%5B1m%5D%29%20%3E%200");
    }
}
