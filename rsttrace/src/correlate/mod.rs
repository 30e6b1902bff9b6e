//! `rsttrace correlate`: pairs the resets in traces taken at two or more ends of connections,
//! to tell a RST the peer sent from one forged in the path, and to find a RST lost on the way.
//! It reads the agents' JSON Lines only: no root, no BPF.
//!
//! Flow: `trace` (files → traces) → `pairing` (skew, matching, status; pure).
// The pairing's users come with the subcommand.
#![allow(dead_code)]
mod pairing;
mod trace;
