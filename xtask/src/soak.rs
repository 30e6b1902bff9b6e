//! `cargo xtask soak --minutes N`: a mix of reset scenarios for N minutes under one rsttrace,
//! sampling its RSS and connection table every 30 s. RSS must stay flat (end within 10 % of the
//! first sample after warm-up); results go to stdout and `bench/soak.txt`.
use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::{
    netns::Pair,
    probe::{metric, status_kib},
};

const METRICS_PORT: u16 = 19_977;
const SAMPLE_EVERY: Duration = Duration::from_secs(30);

fn stim(ns: &str, args: &[&str]) -> Result<Child> {
    Command::new("target/release/rststim").arg(ns).args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().context("rststim")
}

/// One round of the scenario mix: refused storms, aborts with unread data, linger-0, data
/// after close, happy-eyeballs races and keepalive-free churn.
fn round(pair: &Pair) -> Result<()> {
    let s = &pair.server_addr;
    let servers = [("8080", "unread-close"), ("8081", "linger0"), ("8082", "close-first"), ("8083", "hold")]
        .iter()
        .map(|(port, mode)| stim(&pair.server, &["listen", s, port, mode]))
        .collect::<Result<Vec<_>>>()?;
    std::thread::sleep(Duration::from_millis(200));
    let mut clients = vec![stim(&pair.client, &["connect", s, "9", "--repeat", "300"])?];
    for _ in 0..10 {
        clients.push(stim(&pair.client, &["connect", s, "8080", "--send", "100"])?);
        clients.push(stim(&pair.client, &["connect", s, "8081", "--send", "10"])?);
        clients.push(stim(&pair.client, &["connect", s, "8082", "--send-after", "100"])?);
        clients.push(stim(&pair.client, &["connect", s, "8083", "--race"])?);
    }
    for mut c in clients {
        let _ = c.wait();
    }
    for mut server in servers {
        let _ = server.kill();
        let _ = server.wait();
    }
    Ok(())
}

pub fn soak(minutes: u64) -> Result<()> {
    crate::cmd("cargo", &["build", "--release", "--package", "rsttrace", "--package", "rsttrace-tests", "--bins"])?;
    let pair = Pair::new("rstsoak", 1)?;
    let mut tracer = Command::new("target/release/rsttrace")
        .args(["--json", "--metrics", &METRICS_PORT.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .context("starting rsttrace")?;
    std::thread::sleep(Duration::from_secs(3));
    let pid = tracer.id();
    let started = Instant::now();
    let end = started + Duration::from_secs(minutes * 60);
    let mut samples: Vec<(u64, u64, u64, u64)> = Vec::new();
    let mut next_sample = started;
    let mut out = String::from("minute  rss_kib  held  resets_total\n");
    while Instant::now() < end {
        round(&pair)?;
        if Instant::now() >= next_sample {
            let sample = (
                started.elapsed().as_secs(),
                status_kib(pid, "VmRSS"),
                metric(METRICS_PORT, "rsttrace_reports_held"),
                metric(METRICS_PORT, "rsttrace_resets_total"),
            );
            let line = format!("{:>6.1}  {:>7}  {:>7}  {:>12}\n", sample.0 as f64 / 60.0, sample.1, sample.2, sample.3);
            print!("{line}");
            out.push_str(&line);
            samples.push(sample);
            next_sample += SAMPLE_EVERY;
        }
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let status = tracer.wait()?;
    // Flat: compare the end with the first sample after the table has filled (warm-up).
    let warm = samples.iter().find(|s| s.0 >= 120).or(samples.first()).copied().unwrap_or_default();
    let last = samples.last().copied().unwrap_or_default();
    let peak = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let flat = last.1 as f64 <= warm.1 as f64 * 1.10;
    let verdict = format!(
        "soak {minutes} min: rss {} KiB after warm-up, {} KiB at the end, peak {peak} KiB, {} resets; RSS {}\n",
        warm.1,
        last.1,
        last.3,
        if flat { "flat (end within 10% of warm-up): met" } else { "GREW more than 10%: not met" }
    );
    print!("{verdict}");
    out.push_str(&verdict);
    std::fs::create_dir_all("bench")?;
    std::fs::write("bench/soak.txt", out)?;
    if !status.success() {
        bail!("rsttrace exited with {status} at the end of the soak");
    }
    if !flat {
        bail!("RSS grew during the soak");
    }
    Ok(())
}
