//! The agent: checks the host, attaches, and runs the event loop until told to stop, then
//! drains what is left, prints the summary and detaches (by dropping the programs).
use std::{
    io::{self, Write},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, SignalKind},
};

use crate::{
    cli::Config,
    conntrack::{Tracker, Visibility},
    decode::Decoder,
    loader::{self, LoadOptions, LostCounter},
    output::{Clock, JsonSink, Sink, Summary, TableSink},
    report::Cause,
    tracefs::Tracefs,
};

/// How often held resets are checked for classification.
const TICK: Duration = Duration::from_millis(50);

pub async fn run(config: Config) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("must run as root (loading BPF programs needs CAP_BPF, CAP_PERFMON and access to tracefs): try `sudo rsttrace`");
    }
    let tracefs = match config.tracefs {
        Some(t) => t,
        None => {
            let (t, mounted) = Tracefs::find_or_mount()?;
            if mounted {
                eprintln!("rsttrace: mounted tracefs at {}", t.root().display());
            }
            t
        }
    };
    let mut loaded = loader::load(&LoadOptions {
        tracefs: &tracefs,
        btf_path: &config.btf,
        ring_buffer_bytes: config.ring_buffer_bytes,
    })?;
    describe_capture(&loaded.capture);
    let ring = loader::take_ring_buffer(&mut loaded.ebpf)?;
    let lost = LostCounter::new(&mut loaded.ebpf)?;
    // SAFETY: the RingBuf owns its map fd, which stays open and unchanged until the AsyncFd
    // (which owns the RingBuf) is dropped.
    let mut ring = unsafe { AsyncFd::register(ring) }
        .map_err(|e| anyhow::anyhow!("cannot poll the ring buffer: {e}"))?;

    let clock = Clock::now();
    let stdout = io::stdout().lock();
    let mut sink: Box<dyn Sink> = if config.json {
        Box::new(JsonSink::new(io::BufWriter::new(stdout), clock))
    } else {
        Box::new(TableSink::new(io::BufWriter::new(stdout), clock))
    };
    let mut state = LoopState {
        decoder: loaded.decoder.clone(),
        tracker: Tracker::new(
            config.max_connections,
            Visibility {
                every_sent_reset: loaded.capture.reasons,
                socket_destruction: !loaded.capture.missing.iter().any(|m| m.ends_with("tcp_destroy_sock")),
            },
        ),
        summary: Summary::default(),
        lost_reported: 0,
        decode_errors: 0,
    };
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let started = Instant::now();
    let stop_at = config.duration.map(|d| tokio::time::Instant::now() + d);
    let mut tick = tokio::time::interval(TICK);
    eprintln!("rsttrace: attached; tracing TCP resets (Ctrl-C to stop)");

    let result: anyhow::Result<()> = loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.context("polling the ring buffer")?;
                let ring = guard.get_inner_mut();
                while let Some(item) = ring.next() {
                    state.ingest(&item);
                }
                guard.clear_ready();
            }
            _ = tick.tick() => {}
            _ = sigint.recv() => break Ok(()),
            _ = sigterm.recv() => break Ok(()),
            _ = async { tokio::time::sleep_until(stop_at.unwrap()).await }, if stop_at.is_some() => break Ok(()),
        }
        if let Err(e) = state.emit(Clock::monotonic_now_ns(), sink.as_mut()) {
            break Err(e);
        }
        state.report_lost(&lost);
    };
    // Drain: everything the kernel already queued is decoded and every held reset reported.
    let ring = ring.get_mut();
    while let Some(item) = ring.next() {
        state.ingest(&item);
    }
    let flushed = state.emit(u64::MAX, sink.as_mut());
    drop(sink);
    state.report_lost(&lost);
    match result.and(flushed) {
        Err(e) if is_broken_pipe(&e) => {}
        other => other?,
    }
    let mut stderr = io::stderr().lock();
    state.summary.write(&mut stderr, started.elapsed().as_secs_f64(), lost.total(), state.tracker.stats().evicted)?;
    if state.decode_errors > 0 {
        writeln!(stderr, "rsttrace: {} events could not be decoded", state.decode_errors)?;
    }
    // Dropping `loaded.ebpf` detaches every program and frees the maps.
    drop(loaded);
    Ok(())
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

fn describe_capture(c: &loader::Capture) {
    let mut blind: Vec<&str> = Vec::new();
    if !c.reasons {
        eprintln!("rsttrace: this kernel's tcp_send_reset has no reason field: causes are inferred from state and history, kernel_reason is null");
        blind.extend(["no_listener", "no_socket"]);
    }
    if c.missing.iter().any(|m| m.ends_with("tcp_retransmit_skb")) {
        blind.extend([Cause::RetransmitTimeout.name(), Cause::SynTimeout.name()]);
    }
    if !c.missing.is_empty() {
        eprintln!("rsttrace: tracepoints missing on this kernel: {}", c.missing.join(", "));
    }
    if !blind.is_empty() {
        eprintln!("rsttrace: causes this kernel may not show: {}", blind.join(", "));
    }
    if !c.owner_hooks {
        eprintln!("rsttrace: no sock_send_length/sock_recv_length tracepoints: owners are learned from connect/listen/close only");
    }
    if !c.btf_missing.is_empty() {
        eprintln!("rsttrace: BTF incomplete ({}): netns and trigger flags may be missing", c.btf_missing.join("; "));
    }
}

struct LoopState {
    decoder: Decoder,
    tracker: Tracker,
    summary: Summary,
    lost_reported: u64,
    decode_errors: u64,
}

impl LoopState {
    fn ingest(&mut self, bytes: &[u8]) {
        match self.decoder.decode(bytes) {
            Ok(event) => self.tracker.observe(event),
            Err(err) => {
                self.decode_errors += 1;
                log::debug!("undecodable event: {err}");
            }
        }
    }

    fn emit(&mut self, now_ns: u64, sink: &mut dyn Sink) -> anyhow::Result<()> {
        for report in self.tracker.flush(now_ns) {
            self.summary.add(&report);
            sink.report(&report)?;
        }
        Ok(())
    }

    fn report_lost(&mut self, lost: &LostCounter) {
        let total = lost.total();
        if total > self.lost_reported {
            eprintln!("rsttrace: {} events lost (ring buffer full); {total} in total", total - self.lost_reported);
            self.lost_reported = total;
        }
    }
}
