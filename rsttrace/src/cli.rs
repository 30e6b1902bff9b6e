//! Command line: parsed with clap into [`Cli`], then turned into the [`Config`] the agent uses.
use std::path::PathBuf;

use clap::Parser;

use crate::{btf, tracefs};

#[derive(Parser, Debug)]
#[command(
    name = "rsttrace",
    version,
    about = "Tell where every TCP reset on this host came from: who sent it, which process owned the socket, and why.",
    after_help = "Examples:
  sudo rsttrace                  live table of every reset and abort
  sudo rsttrace --json | jq .    one JSON object per reset (event contract in RESETS.md)
  sudo rsttrace -d 60            trace for a minute, then print the summary"
)]
pub struct Cli {
    /// Print one JSON object per line instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Stop after this many seconds (default: until Ctrl-C / SIGTERM).
    #[arg(short = 'd', long, value_name = "SECS")]
    pub duration: Option<u64>,
    /// Ring buffer size in KiB (a power of two, at least 4).
    #[arg(long, value_name = "KIB", default_value_t = 4096, value_parser = parse_ring_kib)]
    pub ring_buffer_kib: u32,
    /// Connections remembered at most; the oldest closed ones are evicted first.
    #[arg(long, value_name = "N", default_value_t = 65536)]
    pub max_connections: usize,
    /// tracefs root to read tracepoint formats from (default: find or mount /sys/kernel/tracing).
    #[arg(long, env = "RSTTRACE_TRACEFS", value_name = "DIR")]
    pub tracefs: Option<PathBuf>,
    /// Kernel BTF file.
    #[arg(long, env = "RSTTRACE_BTF", value_name = "FILE", default_value = btf::DEFAULT_PATH)]
    pub btf: PathBuf,
}

fn parse_ring_kib(s: &str) -> Result<u32, String> {
    let kib: u32 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if kib < 4 || !kib.is_power_of_two() || kib > 1 << 20 {
        return Err(format!("{kib} KiB: must be a power of two between 4 and 1048576"));
    }
    Ok(kib)
}

/// What the agent runs with.
#[derive(Debug)]
pub struct Config {
    pub json: bool,
    pub duration: Option<std::time::Duration>,
    pub ring_buffer_bytes: u32,
    pub max_connections: usize,
    /// `None`: find or mount the standard tracefs.
    pub tracefs: Option<tracefs::Tracefs>,
    pub btf: PathBuf,
}

impl From<Cli> for Config {
    fn from(cli: Cli) -> Self {
        Self {
            json: cli.json,
            duration: cli.duration.map(std::time::Duration::from_secs),
            ring_buffer_bytes: cli.ring_buffer_kib * 1024,
            max_connections: cli.max_connections,
            tracefs: cli.tracefs.map(tracefs::Tracefs::at),
            btf: cli.btf,
        }
    }
}
