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
pub mod ended_here;
pub mod event;
pub mod evidence;
pub mod filter;
pub mod fold;
pub mod holders;
pub mod judge;
pub mod kernel_folds;
pub mod loader;
pub mod local_addresses;
pub mod lost;
pub mod metrics;
pub mod older_sockets;
pub mod output;
pub mod privileges;
pub mod processes;
pub mod recent_sent;
pub mod report;
pub mod runtime_names;
pub mod trace_info;
pub mod tracefs;
pub mod tuple_notes;
pub mod workload;

/// The maps every event goes through (the judge's, the sent resets', the folder's): keyed by
/// endpoints, which SipHash, the standard map's hasher, hashes at several times the cost. Seeded
/// at random per process like the standard one, so peers cannot aim for collisions.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub(crate) type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
