//! rsttrace: where every TCP reset on this host came from.
//!
//! Flow: `loader` attaches the kernel programs → ring buffer → `decode` (bytes → events) →
//! `judge` (follow-up pairing, owner attribution) → `classify` (cause) → `fold` (reports
//! beyond `--max-rate` folded into counted records) → `output`. `agent` wires them in an async
//! loop; `main.rs` only turns errors into exit codes. `correlate` (`rsttrace correlate`) reads
//! the JSON Lines of traces taken at several ends and pairs their resets.
pub mod agent;
pub mod btf;
pub mod classify;
pub mod cli;
pub mod correlate;
pub mod decode;
pub mod event;
pub mod evidence;
pub mod filter;
pub mod fold;
pub mod judge;
pub mod loader;
pub mod metrics;
pub mod output;
pub mod privileges;
pub mod processes;
pub mod recent_sent;
pub mod report;
pub mod trace_info;
pub mod tracefs;
pub mod workload;
