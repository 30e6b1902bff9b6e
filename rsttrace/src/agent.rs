//! The agent: checks the host, attaches, and runs the event loop until told to stop, then
//! drains what is left, prints the summary and detaches (by dropping the programs).
use std::{
    io,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use aya::maps::{MapData, RingBuf};
use rsttrace_common::Filter;
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, SignalKind},
};

use crate::{
    cli::{Config, View},
    judge::{Judge, Visibility},
    processes::Processes,
    workload::Workloads,
    decode::{Decoder, Item},
    filter::ReportFilter,
    fold::Folder,
    kernel_folds::KernelFolds,
    loader::{self, LoadOptions, Socketless},
    lost::LostCounter,
    metrics::Metrics,
    older_sockets, tuple_notes,
    output::{Clock, JsonSink, RotatingFile, Sink, Summary, TableOptions, TableSink, TraceEdge},
    privileges,
    event::{Payload, Task, TcpState},
    report::{Attribution, Cause, Report},
    trace_info::TraceInfo,
    tracefs::Tracefs,
};

/// How often held resets are checked for classification, and the ring buffer read for the events
/// that did not wake the agent (the kernel wakes it once per `WAKEUP_EVERY` events a CPU, set
/// at load: thousands with the default ring buffer on a few CPUs).
const TICK: Duration = Duration::from_millis(50);
/// The tick while nothing is held and no event came in since the last one: an idle host's agent
/// wakes once a second instead of 20 times (each wakeup costs ~0.2 ms of CPU in a VM, which on a
/// quiet host is all the agent costs). A lone reset then waits at most this long to be read.
const IDLE_TICK: Duration = Duration::from_secs(1);
/// How long the exit's last drain waits for items still being submitted: see there.
const IN_FLIGHT_RUNS: Duration = Duration::from_millis(250);

/// Reports classified and written between two drains of the ring buffer (a few ms of work).
const EMIT_BATCH: usize = 1024;
/// Resets held for judging at most: about 0.4 s of a full-rate storm on two cores, over twice
/// what the 150 ms wait holds at that rate; tens of MiB.
const MAX_HELD: usize = 65_536;

/// `--cost-floor`: the empty programs are attached; hold them until told to stop.
async fn cost_floor(duration: Option<Duration>) -> anyhow::Result<()> {
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    eprintln!("rsttrace: attached empty programs to every hook (--cost-floor); nothing is reported");
    let until = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = sigint.recv() => {}
        _ = sigterm.recv() => {}
        _ = until => {}
    }
    Ok(())
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    let must_mount = config.tracefs.is_none() && !Tracefs::is_mounted();
    privileges::check(must_mount)?;
    let clock = Clock::now();
    // Which host and run this is, and the addresses of the namespace it covers (entering a
    // `--netns` namespace needs the privileges dropped after attaching).
    let mut trace = std::sync::Arc::new(TraceInfo::gather(config.filter.netns, config.filter.narrowing()));
    // Open outputs before attaching: a bad path fails fast and leaves nothing in the kernel.
    let mut file = match &config.output {
        Some(o) => Some(
            RotatingFile::open(&o.path, o.rotate_size, o.rotate_keep, clock, trace.clone())
                .with_context(|| format!("--output {}: cannot write there", o.path.display()))?,
        ),
        None => None,
    };
    // Only with --metrics: label sets cost allocations per report.
    let mut metrics = match config.metrics {
        Some(addr) => {
            let m = Metrics::new();
            m.serve(addr).await?;
            Some(m)
        }
        None => None,
    };
    let fold_rate = kernel_fold_rate(&config);
    let tracefs = match config.tracefs {
        Some(t) if !t.root().join("events").is_dir() => {
            bail!("no tracefs at {} (it has no events/ directory)", t.root().display())
        }
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
        filter: config.filter.kernel(),
        cost_floor: config.cost_floor,
        network_evidence: config.network_evidence,
        hooks: config.hooks,
        fold_rate,
    })?;
    if config.cost_floor.is_none() {
        describe_capture(&loaded.capture);
    }
    if let Socketless::Unseen(_) = loaded.capture.socketless {
        // The trace records say it: a peer's trace must not take this one's silence as proof.
        trace = std::sync::Arc::new(TraceInfo { unseen: vec!["resets sent without a full socket".into()], ..(*trace).clone() });
        if let Some(f) = file.as_mut() {
            f.set_trace(trace.clone());
        }
    }
    // The holders of the sockets older than rsttrace, while reading every process's descriptors
    // is still allowed (CAP_SYS_PTRACE, where granted): attached now, the kernel side sees every
    // later socket itself.
    let mut processes = Processes::new();
    processes.walk();
    // The sockets older than rsttrace, read while every namespace may be; the connections among
    // them noted in the kernel side's 4-tuple notes as it notes those it sees start.
    let older = older_sockets::find(Path::new("/proc"), &mut processes, older_sockets::ephemeral_ports(Path::new("/proc")));
    if config.cost_floor.is_none() {
        if let Err(why) = tuple_notes::note_older(&mut loaded.ebpf, &older.connections, &older.time_waits, |pid| processes.name(pid)) {
            eprintln!("rsttrace: the connections older than rsttrace are not noted in the kernel ({why}): a RST forged to one of them reads as its peer's");
        }
    }
    // From now on, the kernel's walk of every task's files (linked at load; run without a privilege).
    match std::mem::replace(&mut loaded.holders, Err(String::new())) {
        Ok(holders) => processes.ask_the_kernel(holders),
        Err(why) if config.cost_floor.is_none() => {
            eprintln!("rsttrace: the holders of sockets opened after start are read from /proc, which shows only processes without capabilities ({why})");
        }
        Err(_) => {}
    }
    // Attached: nothing from here on needs a privilege, so keep none.
    privileges::drop_all().context("dropping capabilities after attaching")?;
    if privileges::remaining() != 0 {
        bail!("capabilities remain after dropping them");
    }
    if config.cost_floor.is_some() {
        return cost_floor(config.duration).await;
    }
    let ring = loader::take_ring_buffer(&mut loaded.ebpf)?;
    let mut lost = LostCounter::new(&mut loaded.ebpf)?;
    let kernel_folds = match fold_rate {
        0 => None,
        _ => Some(KernelFolds::new(&mut loaded.ebpf, Clock::monotonic_now_ns())?),
    };
    // SAFETY: the RingBuf owns its map fd, which stays open and unchanged until the AsyncFd
    // (which owns the RingBuf) is dropped.
    let mut ring = unsafe { AsyncFd::register(ring) }.map_err(|e| anyhow::anyhow!("cannot poll the ring buffer: {e}"))?;

    // Flushed at the end of each batch; large enough that a storm's batch takes few writes.
    let stdout = io::BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    let mut view: Option<Box<dyn Sink>> = match config.view {
        View::Json => Some(Box::new(JsonSink::new(stdout, clock, trace.clone()))),
        View::Table {
            timestamp,
            wide,
            include_benign,
        } => Some(Box::new(TableSink::new(
            stdout,
            clock,
            TableOptions::for_stdout(timestamp, wide, include_benign),
        ))),
        View::Summary { .. } => None,
    };
    let mut state = LoopState {
        decoder: loaded.decoder.clone(),
        workloads: Workloads::new(config.runtime_root.clone()),
        processes,
        unowned_files: Vec::new(),
        judge: Judge::new(Visibility {
            every_sent_reset: !matches!(loaded.capture.socketless, Socketless::Unseen(_)) && !config.filter.drops_other_ends_in_kernel(),
            other_ends_filtered: config.filter.drops_other_ends_in_kernel(),
        }),
        filter: config.filter.clone(),
        folder: Folder::new(config.max_rate, Clock::monotonic_now_ns()),
        kernel_folds,
        summary: Summary::default(),
        metrics: metrics.as_mut(),
        lost_reported: 0,
        events_read: 0,
        decode_errors: 0,
    };
    for c in older.connections.iter().filter(|c| c.opened_here) {
        state.judge.opened_before(c.netns, c.ends);
    }
    for l in older.listeners {
        let comm = state.processes.name(l.pid).unwrap_or_else(|| "?".into());
        state.judge.listening_before(l.netns, l.addr, l.port, Task { pid: l.pid, tid: l.pid, comm, cgroup: 0 });
        state.judge.local_addresses.learn(l.netns, l.pid);
    }
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let started = Instant::now();
    let stop_at = config.duration.map(|d| tokio::time::Instant::now() + d);
    let mut next_tick = tokio::time::Instant::now() + TICK;
    let mut read_at_last_tick = 0;
    let summary_every = match config.view {
        View::Summary { interval } => Some(interval),
        _ => None,
    };
    let mut next_summary = summary_every.map(|i| tokio::time::Instant::now() + i);
    for sink in sinks(&mut view, &mut file) {
        sink.trace(TraceEdge::Start)
            .context("writing the trace's start")?;
    }
    // From the trace's start on: well after the last program attached (the scans above lie
    // between), so a RST sent before its hook was there is in before it, even by a slow softirq.
    state.judge.attached(Clock::monotonic_now_ns());
    eprintln!("rsttrace: attached; tracing TCP resets (Ctrl-C to stop)");

    let result: anyhow::Result<()> = 'run: loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.context("polling the ring buffer")?;
                state.read_ring(guard.get_inner_mut());
                guard.clear_ready();
                // Resets now held are due in 150 ms: no waiting out an idle tick for them.
                if state.judge.held() > 0 {
                    next_tick = next_tick.min(tokio::time::Instant::now() + TICK);
                }
            }
            _ = tokio::time::sleep_until(next_tick) => {
                // The kernel wakes us only per batch; pick up stragglers on the tick.
                state.read_ring(ring.get_mut());
                if state.judge.local_addresses.refresh_due() {
                    state.judge.local_addresses.refresh();
                }
                let idle = state.events_read == read_at_last_tick && state.judge.held() == 0;
                read_at_last_tick = state.events_read;
                next_tick = tokio::time::Instant::now() + if idle { IDLE_TICK } else { TICK };
            }
            _ = sigint.recv() => break 'run Ok(()),
            _ = sigterm.recv() => break 'run Ok(()),
            _ = sighup.recv() => {
                // logrotate moved the file away: start a new one at the same path.
                if let Some(f) = file.as_mut() {
                    if let Err(e) = f.reopen() {
                        break Err(anyhow::Error::new(e).context("reopening --output on SIGHUP"));
                    }
                }
            }
            _ = async { tokio::time::sleep_until(stop_at.unwrap()).await }, if stop_at.is_some() => break Ok(()),
        }
        let mut sinks = sinks(&mut view, &mut file);
        Clock::refresh();
        if let Err(e) = state.report_lost(&lost, false, &mut sinks) {
            break Err(e);
        }
        // Reports go out in bounded batches with the ring buffer drained between them: a burst
        // of thousands due at once must not leave the kernel's side unread for that long.
        let now = Clock::monotonic_now_ns();
        state.take_kernel_folds(now, false, !sinks.is_empty());
        loop {
            if let Err(e) = state.emit(now, now, EMIT_BATCH, &mut sinks) {
                break 'run Err(e);
            }
            if !state.judge.has_due(now) {
                break;
            }
            state.read_ring(ring.get_mut());
        }
        if let (Some(at), Some(every)) = (next_summary, summary_every) {
            if tokio::time::Instant::now() >= at {
                next_summary = Some(at + every);
                state.summary.write(&mut io::stdout().lock(), started.elapsed().as_secs_f64(), lost.total(false), state.events_read)?;
            }
        }
        // An idle tick must not make a summary late.
        if let Some(at) = next_summary {
            next_tick = next_tick.min(at);
        }
    };
    // A second Ctrl-C while draining ends the process at once (the kernel detaches the
    // programs when their file descriptors close).
    // SAFETY: restoring the default disposition of SIGINT.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
    // Detach first, then drain: no program is left mid-event holding a slot that would stop the
    // drain, and a storm cannot keep the drain going. (The ring buffer and the lost counter are
    // maps taken out of `loaded`, so they outlive it.)
    drop(loaded);
    // Drain: everything the kernel already queued is decoded and every held reset reported. A
    // run that began before the detach may still be finishing (the kernel frees a detached
    // program only after its runs end: microseconds), so the drain goes on until every item the
    // kernel counted as submitted is read, or `IN_FLIGHT_RUNS` is over; then what is missing is
    // counted lost.
    let ring = ring.get_mut();
    let give_up = Instant::now() + IN_FLIGHT_RUNS;
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        while let Some(item) = ring.next() {
            state.ingest(&item);
        }
        if lost.check_read(state.events_read) == 0 || Instant::now() >= give_up {
            break;
        }
    }
    let mut all = sinks(&mut view, &mut file);
    state.take_kernel_folds(Clock::monotonic_now_ns(), true, !all.is_empty());
    let flushed = state
        .report_lost(&lost, true, &mut all)
        .and_then(|_| state.emit(u64::MAX, Clock::monotonic_now_ns(), usize::MAX, &mut all))
        .and_then(|_| {
            for sink in all.iter_mut() {
                sink.trace(TraceEdge::End)?;
                sink.flush()?;
            }
            Ok(())
        });
    drop(all);
    drop(view);
    match result.and(flushed) {
        Err(e) if is_broken_pipe(&e) => {}
        other => other?,
    }
    let secs = started.elapsed().as_secs_f64();
    // The summary goes to stdout in counting mode (it is the output), to stderr otherwise.
    if summary_every.is_some() {
        state.summary.write(&mut io::stdout().lock(), secs, lost.total(true), state.events_read)?;
    } else {
        state.summary.write(&mut io::stderr().lock(), secs, lost.total(true), state.events_read)?;
    }
    if state.decode_errors > 0 {
        eprintln!("rsttrace: {} events could not be decoded", state.decode_errors);
    }
    Ok(())
}

/// Resets a second each CPU sends across before the kernel side counts the storm's kinds itself
/// (see `kernel_folds`): `--max-rate`, where nothing needs every reset to cross. A kernel filter
/// (`-p`, `-c`, `-L`, `-D`, `-4`, `-6`) judges events the counts do not keep, and
/// `--network-evidence` judges each received reset by its own segments. Under a filter of the
/// agent's (`--netns`, `--container`, `--direction`, `--cause`) the kernel's rate would be
/// spent on resets the filter drops, and fold the few it keeps: everything crosses.
fn kernel_fold_rate(config: &Config) -> u32 {
    if config.network_evidence || config.filter.kernel() != Filter::ANY || config.filter.in_agent() || config.cost_floor.is_some() {
        0
    } else {
        config.max_rate
    }
}

fn sinks<'a>(view: &'a mut Option<Box<dyn Sink>>, file: &'a mut Option<RotatingFile>) -> Vec<&'a mut dyn Sink> {
    let mut out: Vec<&mut dyn Sink> = Vec::with_capacity(2);
    if let Some(v) = view.as_deref_mut() {
        out.push(v);
    }
    if let Some(f) = file.as_mut() {
        out.push(f);
    }
    out
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe))
}

/// One line on how this kernel is traced and what it hides, then any degradations.
fn describe_capture(c: &loader::Capture) {
    let reasons = match (c.reasons, c.active_reasons) {
        (true, true) => "kernel reasons",
        (true, false) => "kernel reasons for the stack's resets, the application's inferred from socket state",
        (false, _) => "no kernel reasons: causes inferred from socket state and history (kernel_reason null)",
    };
    let socketless = match &c.socketless {
        Socketless::Tracepoint => "resets without a socket from tcp_send_reset".to_string(),
        Socketless::Kprobe => "resets without a full socket from a kprobe on tcp_v4/v6_send_reset".to_string(),
        Socketless::Unseen(why) => format!("resets without a full socket NOT seen ({why})"),
    };
    let mut blind: Vec<&str> = Vec::new();
    if !c.active_reasons {
        // tcp_check_oom()'s abort in close() looks like any other abort there without its
        // reason (a timer's is told by the orphan's closing state).
        blind.push("orphan_memory in close()");
    }
    if c.missing.iter().any(|m| m.ends_with("inet_sk_error_report")) {
        // The error report is the only sign of a timeout that sent no RST.
        blind.extend([Cause::RetransmitTimeout.name(), Cause::SynTimeout.name()]);
    }
    if matches!(c.socketless, Socketless::Unseen(_)) {
        blind.extend([Cause::NoListener, Cause::NoSocket, Cause::TimewaitReuse, Cause::DataAfterClose, Cause::Injected].map(Cause::name));
    }
    let seen = if blind.is_empty() {
        "every cause visible".to_string()
    } else {
        format!("causes not visible: {}", blind.join(", "))
    };
    let evidence = match c.evidence {
        None => "received resets judged without the peer's hop counts (no --network-evidence)",
        Some(loader::EvidenceHook::Tracepoint) => {
            "the peer's hop counts sampled from tcp:tcp_probe (--network-evidence)"
        }
        Some(loader::EvidenceHook::Kprobe) => {
            "the peer's hop counts sampled by a kprobe on tcp_rcv_established (--network-evidence)"
        }
    };
    let hooks = match &c.hooks {
        loader::Hooks::Typed { classic_send_reset: None } => "BTF-typed tracepoints".to_string(),
        loader::Hooks::Typed { classic_send_reset: Some(why) } => format!("BTF-typed tracepoints (classic for tcp_send_reset: {why})"),
        loader::Hooks::Floor => "empty programs (--cost-floor)".to_string(),
        loader::Hooks::ClassicBecause(why) => format!("classic tracepoints ({why})"),
    };
    eprintln!("rsttrace: capture mode: {reasons}; {socketless}; {evidence}; {hooks}; {seen}");
    if !c.missing.is_empty() {
        eprintln!("rsttrace: tracepoints missing on this kernel: {}", c.missing.join(", "));
    }
    if !c.release_hook {
        eprintln!("rsttrace: no tcp:tcp_destroy_sock tracepoint: a socket reset without an owner on record and closed at once is named after its listener");
    }
    if !c.btf_missing.is_empty() {
        eprintln!("rsttrace: BTF incomplete ({}): netns and trigger flags may be missing", c.btf_missing.join("; "));
    }
}

struct LoopState<'m> {
    decoder: Decoder,
    judge: Judge,
    workloads: Workloads,
    processes: Processes,
    /// The socket files of events with no owner on record, read since the last look-up.
    unowned_files: Vec<u64>,
    filter: ReportFilter,
    folder: Folder,
    /// What the kernel side counts past `--max-rate`; `None` where it counts nothing.
    kernel_folds: Option<KernelFolds>,
    summary: Summary,
    metrics: Option<&'m mut Metrics>,
    lost_reported: u64,
    /// Every item read from the ring buffer, decodable or not.
    events_read: u64,
    decode_errors: u64,
}

impl LoopState<'_> {
    /// Read what the kernel queued, while fewer than [`MAX_HELD`] resets wait to be judged: an
    /// agent that cannot write as fast as a storm comes (a slow disk under `--max-rate 0`) leaves
    /// the rest in the ring buffer, where the kernel counts what no longer fits as lost, rather
    /// than holding the storm in memory (gigabytes in a minute).
    fn read_ring(&mut self, ring: &mut RingBuf<MapData>) {
        while self.judge.held() < MAX_HELD {
            let Some(item) = ring.next() else { break };
            self.ingest(&item);
        }
    }

    fn ingest(&mut self, bytes: &[u8]) {
        self.events_read += 1;
        match self.decoder.decode_item(bytes) {
            Ok(Item::Released(release)) => self.processes.released(&release),
            Ok(Item::Event(event)) => {
                // A listener's namespace: which addresses it serves (see `listens_here`).
                if let (Payload::SetState { new: Some(TcpState::Listen), .. }, Some(owner)) = (&event.payload, event.owner.or(event.current)) {
                    self.judge.local_addresses.learn(event.netns, owner.pid);
                }
                if event.inode != 0 && event.owner.is_none_or(|o| self.processes.gone(o.pid)) {
                    self.unowned_files.push(event.inode);
                }
                self.judge.observe(event)
            }
            Err(err) => {
                self.decode_errors += 1;
                log::debug!("undecodable event: {err}");
            }
        }
    }

    /// What `/proc` adds to a report: the process's own name where one of its other threads
    /// acted (unless the kernel side named the process already), and the name of an owner on
    /// record as it is now (the kernel side learned it at the socket's last change of state:
    /// the process may have exec()ed or renamed itself since), while that process lives.
    fn complete_owner(&mut self, report: &mut Report) {
        let Some(owner) = report.owner.as_mut() else { return };
        // Data after close names the process that closed: that it is gone says its end may have
        // come with it (a kill, a crash, a restart) rather than from an idle timeout.
        if report.verdict.cause == Cause::DataAfterClose && self.processes.gone(owner.pid) {
            report.verdict.why = format!("{}; {}[{}] has exited since", report.verdict.why, owner.comm, owner.pid).into();
        }
        if owner.tid != owner.pid && report.thread.is_none() {
            if let Some(name) = self.processes.name(owner.pid) {
                report.thread = Some(owner.comm);
                owner.comm = name;
            }
        } else if owner.tid == owner.pid && report.attribution == Attribution::SocketOwner && !self.processes.gone(owner.pid) {
            if let Some(name) = self.processes.current_name(owner.pid) {
                owner.comm = name;
            }
        }
    }

    /// Report up to `max` held events whose wait is over at `due_ns`; past `--max-rate` (at
    /// `now_ns`), fold them, and write the folded records of an interval that is over. With
    /// `due_ns = u64::MAX` (at exit) everything held goes out, folded records included.
    fn emit(&mut self, due_ns: u64, now_ns: u64, max: usize, sinks: &mut [&mut dyn Sink]) -> anyhow::Result<()> {
        // One walk for the sockets nobody was seen using that came since the last: as soon as
        // they are read, while their holder (a forking server's child) may still hold them.
        if !self.unowned_files.is_empty() {
            self.processes.find_holders(self.unowned_files.drain(..));
        }
        for mut report in self.judge.flush_at_most(due_ns, max, &mut self.processes) {
            report.workload = self.workloads.resolve(report.cgroup);
            self.complete_owner(&mut report);
            if !self.filter.matches(&report) {
                continue;
            }
            self.summary.add(&report, 1);
            if let Some(m) = self.metrics.as_deref_mut() {
                m.record(&report, 1);
            }
            // Counting only (no sink, or only a table hiding benign resets): nothing is written,
            // so nothing needs folding.
            if !sinks.iter().any(|s| s.shows(&report)) || !self.folder.admit(&report, now_ns) {
                continue;
            }
            for sink in sinks.iter_mut() {
                sink.report(&report)?;
            }
        }
        if self.folder.due(now_ns) || due_ns == u64::MAX {
            self.write_folded(now_ns, sinks)?;
        }
        // One write per batch, not per report: live for `| jq`, cheap under a storm.
        for sink in sinks.iter_mut() {
            sink.flush()?;
        }
        if let Some(m) = self.metrics.as_deref_mut() {
            m.set_held(self.judge.held());
        }
        Ok(())
    }

    /// The resets the kernel side counted, once their generation is over (`all`: every one, at
    /// exit): counted like the others, and folded when anything is written.
    fn take_kernel_folds(&mut self, now_ns: u64, all: bool, writing: bool) {
        let Some(kernel) = self.kernel_folds.as_mut() else { return };
        for folded in kernel.take(now_ns, all) {
            let Some(mut report) = folded.report(&self.judge) else { continue };
            report.workload = self.workloads.resolve(report.cgroup);
            self.complete_owner(&mut report);
            if !self.filter.matches(&report) {
                continue;
            }
            self.summary.add(&report, folded.count);
            self.summary.counted_in_kernel += folded.count;
            if let Some(m) = self.metrics.as_deref_mut() {
                m.record(&report, folded.count);
            }
            if writing {
                self.folder.fold(&report, folded.count, folded.last_ns, now_ns);
            }
        }
    }

    /// Write the folded records gathered so far.
    fn write_folded(&mut self, now_ns: u64, sinks: &mut [&mut dyn Sink]) -> anyhow::Result<()> {
        for folded in self.folder.take(now_ns) {
            self.summary.add_folded(&folded);
            if let Some(m) = self.metrics.as_deref_mut() {
                m.add_folded(folded.count);
            }
            for sink in sinks.iter_mut() {
                sink.folded(&folded)?;
            }
        }
        Ok(())
    }

    /// Never silent: lost events reach stderr, every sink and the metrics.
    /// `now`: read every count this instant (at exit) rather than as last sampled.
    fn report_lost(&mut self, lost: &LostCounter, now: bool, sinks: &mut [&mut dyn Sink]) -> anyhow::Result<()> {
        let loss = lost.loss(now);
        let total = loss.total();
        if total > self.lost_reported {
            let now = total - self.lost_reported;
            eprintln!("rsttrace: {now} events lost; {total} in total ({})", loss.explained());
            self.judge.note_loss(Clock::monotonic_now_ns());
            if let Some(m) = self.metrics.as_deref_mut() {
                m.add_lost(now);
            }
            for sink in sinks.iter_mut() {
                sink.lost(now, &loss)?;
            }
            self.lost_reported = total;
        }
        Ok(())
    }
}
