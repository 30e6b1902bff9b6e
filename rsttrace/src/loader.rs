//! Loading and attaching the kernel programs: the only module that touches aya's program types.
//!
//! Before load it reads each tracepoint's format file (so the programs and the decoder agree on
//! offsets for this kernel) and the struct offsets from BTF, and writes both into the programs'
//! load-time globals. Tracepoints the kernel lacks are reported, not fatal, unless they are the
//! core ones without which rsttrace would be blind to resets.
use std::path::Path;

use aya::{
    maps::{MapData, RingBuf},
    programs::{BtfTracePoint, KProbe, RawTracePoint, TracePoint},
    Btf, Ebpf, EbpfLoader, Endianness,
};
use rsttrace_common::{
    EventKind, Filter, KernelConfig, ReleaseLayout, SockOffsets, StructOffsets, TcpProbeLayout,
    HolderFields, TracepointLayout, TypedSkbFields, TypedSockFields, ERROR_REPORT_SHAPE, EVENT_SIZE, FOLDED_KEYS, NO_FIELD,
    PEER_SLOTS, RECEIVE_RESET_SHAPE, SEND_RESET_SHAPE, SET_STATE_SHAPE,
};

use crate::{
    btf,
    holders::SocketHolders,
    decode::{Decoder, RecordFields},
    tracefs::{Tracefs, TracefsError},
};

pub(crate) static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("RSTTRACE_EBPF_OBJECT"));

/// Tracepoints without which rsttrace cannot do its job.
const CORE: [EventKind; 3] = [EventKind::SendReset, EventKind::ReceiveReset, EventKind::SetState];

/// The kernel functions that send every passive reset, socket or not. Probed only where
/// `tcp:tcp_send_reset` stays silent without a full socket.
const SEND_RESET_FUNCTIONS: [&str; 2] = ["tcp_v4_send_reset", "tcp_v6_send_reset"];

/// Where a socket's last reference goes: names the process that lets go of a socket nobody was
/// seen acting on (see `Released`); optional.
const RELEASE_TRACEPOINT: (&str, &str) = ("tcp", "tcp_destroy_sock");

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Tracefs(#[from] TracefsError),
    #[error("loading the BPF object failed: {0}")]
    Object(#[source] aya::EbpfError),
    #[error("the kernel refused program {program}: {source}")]
    Program {
        program: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    /// aya's message would carry the whole verifier log, thousands of characters on one line:
    /// its last lines are printed before this.
    #[error("the kernel refused program {program}: {error}")]
    Refused {
        program: &'static str,
        #[source]
        error: std::io::Error,
    },
    #[error("attaching {program} to {group}:{name} failed: {source}")]
    Attach {
        program: &'static str,
        group: &'static str,
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    /// `--network-evidence` was asked for and this kernel offers no hook that sees segments.
    #[error("--network-evidence: {0}")]
    Evidence(String),
    #[error("BPF map {0} is missing from the object")]
    Map(&'static str),
    #[error("BPF program {0} is missing from the object")]
    MissingProgram(&'static str),
}

/// What this kernel lets rsttrace see, for the start-up message.
#[derive(Debug, Default)]
pub struct Capture {
    /// Tracepoints that do not exist here.
    pub missing: Vec<String>,
    /// `tcp_send_reset` carries `sk_rst_reason`.
    pub reasons: bool,
    /// The reasons name the application's aborts too (`TCP_ABORT_ON_CLOSE`).
    pub active_reasons: bool,
    /// How resets sent without a full socket (closed port, TIME_WAIT) are seen.
    pub socketless: Socketless,
    /// The hook that names the process releasing a socket is attached.
    pub release_hook: bool,
    /// Struct offsets BTF could not give (netns or trigger flags then stay empty).
    pub btf_missing: Vec<String>,
    /// How `--network-evidence` samples the peer's segments; `None` without the flag.
    pub evidence: Option<EvidenceHook>,
    /// How the programs attach.
    pub hooks: Hooks,
}

/// How the programs attach to their tracepoints.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum Hooks {
    /// BTF-typed tracepoints, which hand over their arguments and build no record (see
    /// `TYPED`); for `tcp_send_reset` only where its record has the 6.10+ layout and the
    /// verifier accepts its program, else its classic program, and why (`classic_send_reset`).
    Typed { classic_send_reset: Option<String> },
    /// `--cost-floor`'s empty programs (nothing is reported).
    #[default]
    Floor,
    /// Classic tracepoints everywhere, and why not typed ones.
    ClassicBecause(String),
}

/// `--hooks`: which attach type the programs use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum HookKind {
    /// BTF-typed tracepoints (`tp_btf`) where the kernel's BTF and verifier allow them, else
    /// classic ones.
    #[default]
    Auto,
    /// Classic tracepoints everywhere.
    Classic,
}

/// The per-segment hook of `--network-evidence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvidenceHook {
    /// `tcp:tcp_probe`, whose record names the socket and the segment (6.12 and 6.18; not 6.1).
    Tracepoint,
    /// A kprobe on `tcp_rcv_established` (older kernels).
    Kprobe,
}

/// Where resets without a full socket come from on this kernel.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum Socketless {
    /// `tcp:tcp_send_reset` reports them itself (its record takes addresses from the segment).
    #[default]
    Tracepoint,
    /// A kprobe on the functions that send them (kernels before 6.10).
    Kprobe,
    /// Neither: the kprobe could not be attached (the reason is kept for the start-up message).
    Unseen(String),
}

pub struct Loaded {
    /// Owns the programs and their links; dropping it detaches everything.
    pub ebpf: Ebpf,
    pub decoder: Decoder,
    pub capture: Capture,
    /// The iterator that names a socket file's holder, or why there is none.
    pub holders: Result<SocketHolders, String>,
}

pub struct LoadOptions<'a> {
    pub tracefs: &'a Tracefs,
    pub btf_path: &'a Path,
    /// Ring buffer size in bytes (a power-of-two multiple of the page size).
    pub ring_buffer_bytes: u32,
    /// Applied in the kernel before an event is reserved.
    pub filter: Filter,
    /// Attach the empty programs of `floor.rs` to the same hooks instead (`--cost-floor`).
    pub cost_floor: Option<FloorKind>,
    /// Sample every incoming segment of established sockets (`--network-evidence`).
    pub network_evidence: bool,
    pub hooks: HookKind,
    /// Resets a second each CPU sends across before the kernel side counts refused SYNs and
    /// refusals itself (`--max-rate`); 0: it counts none.
    pub fold_rate: u32,
}

/// How `--cost-floor` attaches its empty programs to the tracepoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FloorKind {
    /// As rsttrace's own programs: classic tracepoints, which first build their record.
    Classic,
    /// Raw tracepoints, which hand over the arguments: what the attach type alone costs.
    Raw,
}

pub fn load(opts: &LoadOptions) -> Result<Loaded, LoadError> {
    let mut capture = Capture::default();
    let mut kinds: [Option<RecordFields>; EventKind::COUNT] = Default::default();
    let mut config = KernelConfig::EMPTY;
    for kind in EventKind::ALL {
        let (group, name) = kind.tracepoint();
        match opts.tracefs.format(group, name) {
            Ok(format) => {
                let fields = RecordFields::from_format(&format);
                config.layouts[kind as usize] = fields.kernel_layout();
                if kind == EventKind::SendReset {
                    capture.reasons = fields.has_reason();
                    capture.active_reasons = fields.has_active_reasons();
                    if !fields.has_segment_addresses() {
                        capture.socketless = Socketless::Kprobe;
                    }
                }
                kinds[kind as usize] = Some(fields);
            }
            Err(err @ TracefsError::MissingTracepoint { .. }) if !CORE.contains(&kind) => {
                log::debug!("{err}");
                capture.missing.push(format!("{group}:{name}"));
            }
            Err(err) => return Err(err.into()),
        }
    }
    config.filter = opts.filter;
    config.release = release_layout(opts.tracefs);
    capture.release_hook = config.release.skaddr != NO_FIELD;
    let mut typed_sock = TypedSockFields::UNKNOWN;
    let mut holder_fields = HolderFields::UNKNOWN;
    (config.offsets, config.sock) = match btf::Btf::from_file(opts.btf_path) {
        Ok(btf) => {
            let (offsets, sock, missing) = btf::struct_offsets(&btf);
            capture.btf_missing = missing;
            typed_sock = btf::typed_sock_fields(&btf);
            holder_fields = btf::holder_fields(&btf, &sock);
            (offsets, sock)
        }
        Err(err) => {
            capture.btf_missing.push(err.to_string());
            (StructOffsets::UNKNOWN, SockOffsets::UNKNOWN)
        }
    };
    // Socket facts stand in for the reason where the kernel gives none for an application's
    // abort; kernels that name every reason never read them.
    config.sock.active = u32::from(!capture.active_reasons);

    let o = &config.offsets;
    let typed_skb = TypedSkbFields { head: o.skb_head, transport_header: o.skb_transport_header, network_header: o.skb_network_header, dev: o.skb_dev, dev_net: o.dev_net };
    let tcp_probe = tcp_probe_layout(opts.tracefs);
    let evidence = u8::from(opts.network_evidence);
    let filter_active = u8::from(config.filter != Filter::ANY);
    // The CPUs that run programs: a VM may have many more possible than online.
    let online = aya::util::online_cpus().map_or(64, |cpus| cpus.len());
    let wakeup_every = wakeup_every(opts.ring_buffer_bytes, online);
    let fold_cost_ns: u64 = if opts.fold_rate == 0 { 0 } else { (1_000_000_000 / u64::from(opts.fold_rate)).max(1) };
    // The numbers of `enum sk_rst_reason` change between versions.
    let reason_tcp_state: u32 = kinds[EventKind::SendReset as usize].as_ref().and_then(|f| f.reason_value("TCP_STATE")).unwrap_or(u32::MAX);
    let mut loader = EbpfLoader::new();
    for kind in EventKind::ALL {
        loader.override_global(layout_global(kind), &config.layouts[kind as usize], true);
    }
    // The kernel's BTF as aya reads it, for the typed programs and the holder iterator: parsed
    // once, where one of them asks for it.
    let aya_btf = std::cell::OnceCell::new();
    let kernel_btf = || aya_btf.get_or_init(|| Btf::parse_file(opts.btf_path, Endianness::default()).map_err(|e| format!("BTF: {e}"))).as_ref().map_err(String::clone);
    let mut ebpf = loader
        .override_global("RELEASE", &config.release, true)
        .override_global("OFFSETS", &config.offsets, true)
        .override_global("SOCK_OFFSETS", &config.sock, true)
        .override_global("FILTER", &config.filter, true)
        .override_global("FILTER_ACTIVE", &filter_active, true)
        .override_global("TCP_PROBE", &tcp_probe, true)
        .override_global("NETWORK_EVIDENCE", &evidence, true)
        .override_global("TYPED_SOCK", &typed_sock, true)
        .override_global("TYPED_SKB", &typed_skb, true)
        .override_global("HOLDER_FIELDS", &holder_fields, true)
        .override_global("WAKEUP_EVERY", &wakeup_every, true)
        .override_global("FOLD_COST_NS", &fold_cost_ns, true)
        .override_global("REASON_TCP_STATE", &reason_tcp_state, true)
        .map_max_entries("EVENTS", opts.ring_buffer_bytes)
        // Its 2.5 MiB only where something samples into it; a look-up elsewhere finds nothing.
        .map_max_entries("PEERS", if opts.network_evidence { PEER_SLOTS } else { 1 })
        // Per CPU and preallocated: only where the kernel side counts.
        .map_max_entries("FOLDED", if opts.fold_rate > 0 { FOLDED_KEYS } else { 1 })
        .load(OBJECT)
        .map_err(LoadError::Object)?;
    let floor = |program: &'static str, empty: &'static str| if opts.cost_floor.is_some() { empty } else { program };
    let present: Vec<EventKind> = EventKind::ALL.into_iter().filter(|k| kinds[*k as usize].is_some()).collect();
    let release_hook = capture.release_hook.then_some(RELEASE_TRACEPOINT);
    // The event kinds the typed programs took over from the classic ones.
    let mut typed_kinds: Vec<EventKind> = Vec::new();
    if opts.cost_floor == Some(FloorKind::Raw) {
        let names = present.iter().map(|k| k.tracepoint().1).chain(release_hook.map(|(_, name)| name));
        attach_raw(&mut ebpf, "floor_raw_tracepoint", names)?;
    } else {
        if opts.cost_floor.is_none() {
            let typed = typed_plan(opts, &typed_sock, &config.layouts, &present, capture.release_hook);
            capture.hooks = match typed.and_then(|plan| attach_typed_or_without_sent(&mut ebpf, kernel_btf()?, plan)) {
                Ok((plan, refused)) => {
                    typed_kinds = plan.iter().filter_map(|(_, _, kind)| *kind).collect();
                    let left_out = !typed_kinds.contains(&EventKind::SendReset) && present.contains(&EventKind::SendReset);
                    let classic_send_reset = refused.or_else(|| left_out.then(|| "its record has the layout before 6.10".to_string()));
                    Hooks::Typed { classic_send_reset }
                }
                Err(why) => Hooks::ClassicBecause(why),
            };
        }
        for kind in present {
            if typed_kinds.contains(&kind) {
                continue;
            }
            // Where it fires without a socket, the program that may count refused SYNs itself.
            let program = if kind == EventKind::SendReset && capture.socketless == Socketless::Tracepoint { "tcp_send_reset_counting" } else { kind.program() };
            attach(&mut ebpf, floor(program, "floor_tracepoint"), &[kind.tracepoint()])?;
        }
        if let Some(hook) = release_hook.filter(|_| !matches!(capture.hooks, Hooks::Typed { .. })) {
            attach(&mut ebpf, floor("tcp_destroy_sock", "floor_tracepoint"), &[hook])?;
        }
    }
    if capture.socketless == Socketless::Kprobe {
        if let Err(e) = attach_kprobe(&mut ebpf, floor("send_reset_kprobe", "floor_kprobe"), &SEND_RESET_FUNCTIONS) {
            capture.socketless = Socketless::Unseen(e.to_string());
        }
    }
    if opts.network_evidence && opts.cost_floor.is_none() {
        capture.evidence = Some(attach_evidence(&mut ebpf, tcp_probe)?);
    }
    // Not for `--cost-floor`, which reports nothing.
    let holders = if opts.cost_floor.is_none() { kernel_btf().and_then(|btf| SocketHolders::load(&mut ebpf, btf, &holder_fields)) } else { Err("--cost-floor".into()) };
    Ok(Loaded {
        ebpf,
        decoder: Decoder::new(kinds),
        capture,
        holders,
    })
}

/// The BTF-typed programs: the tracepoint each attaches to, and the layout of the record it writes
/// in place of the classic tracepoint's (`None`: the release hook, which writes none).
const TYPED: [(&str, &str, Option<(EventKind, TracepointLayout)>); 5] = [
    ("set_state_typed", "inet_sock_set_state", Some((EventKind::SetState, SET_STATE_SHAPE))),
    ("receive_reset_typed", "tcp_receive_reset", Some((EventKind::ReceiveReset, RECEIVE_RESET_SHAPE))),
    ("error_report_typed", "inet_sk_error_report", Some((EventKind::ErrorReport, ERROR_REPORT_SHAPE))),
    ("send_reset_typed", "tcp_send_reset", Some((EventKind::SendReset, SEND_RESET_SHAPE))),
    ("destroy_sock_typed", "tcp_destroy_sock", None),
];

/// A typed program to attach: its name, its tracepoint, and the event kind it takes over.
type TypedProgram = (&'static str, &'static str, Option<EventKind>);

/// The typed programs to attach on this kernel, or why none can be.
fn typed_plan(
    opts: &LoadOptions,
    fields: &TypedSockFields,
    layouts: &[TracepointLayout; EventKind::COUNT],
    present: &[EventKind],
    release_hook: bool,
) -> Result<Vec<TypedProgram>, String> {
    if opts.hooks == HookKind::Classic {
        return Err("--hooks classic".into());
    }
    if !fields.complete() {
        return Err("BTF does not name the socket fields they read".into());
    }
    let mut plan = Vec::new();
    for (program, tracepoint, event) in TYPED {
        match event {
            Some((kind, _)) if !present.contains(&kind) => continue,
            // Before 6.10 the record takes its addresses from the socket alone, and the
            // tracepoint fires for full sockets only: the classic program (and the kprobe) stay.
            Some((EventKind::SendReset, shape)) if layouts[EventKind::SendReset as usize] != shape => continue,
            Some((kind, shape)) if layouts[kind as usize] != shape => {
                return Err(format!("{tracepoint}'s record is laid out unlike the kernels rsttrace knows"));
            }
            None if !release_hook => continue,
            _ => plan.push((program, tracepoint, event.map(|(kind, _)| kind))),
        }
    }
    Ok(plan)
}

/// [`attach_typed`]; where that fails with the sent reset's program in the plan (the largest, so
/// the likeliest a verifier refuses), once more without it, so that the rest stay typed and
/// `tcp_send_reset` keeps its classic program. Returns what was attached, and why the sent
/// reset's program was left out, if it was.
fn attach_typed_or_without_sent(ebpf: &mut Ebpf, btf: &Btf, plan: Vec<TypedProgram>) -> Result<(Vec<TypedProgram>, Option<String>), String> {
    match attach_typed(ebpf, btf, &plan) {
        Ok(()) => Ok((plan, None)),
        Err(why) if plan.iter().any(|(_, _, kind)| *kind == Some(EventKind::SendReset)) => {
            let rest: Vec<TypedProgram> = plan.into_iter().filter(|(_, _, kind)| *kind != Some(EventKind::SendReset)).collect();
            match attach_typed(ebpf, btf, &rest) {
                Ok(()) => Ok((rest, Some(why))),
                Err(again) => Err(format!("{why}; without it: {again}")),
            }
        }
        Err(why) => Err(why),
    }
}

/// Load and attach the typed programs in place of the classic ones; on any refusal, detach what
/// was attached and say why (the classic programs then take over). A program loaded by an
/// earlier attempt is not loaded again.
fn attach_typed(ebpf: &mut Ebpf, btf: &Btf, programs: &[TypedProgram]) -> Result<(), String> {
    let mut attached = Vec::new();
    for &(program, tracepoint, _) in programs {
        let result = (|| -> Result<(), String> {
            let prog: &mut BtfTracePoint = ebpf
                .program_mut(program)
                .ok_or_else(|| format!("program {program} missing"))?
                .try_into()
                .map_err(|e: aya::programs::ProgramError| e.to_string())?;
            if prog.fd().is_err() {
                prog.load(tracepoint, btf).map_err(|e| format!("the kernel refused the typed program for {tracepoint}: {}", refusal(&e)))?;
            }
            let link = prog.attach().map_err(|e| format!("attaching to {tracepoint}: {e}"))?;
            attached.push((program, link));
            Ok(())
        })();
        if let Err(why) = result {
            for (program, link) in attached {
                if let Some(prog) = ebpf.program_mut(program).and_then(|p| <&mut BtfTracePoint>::try_from(p).ok()) {
                    let _ = prog.detach(link);
                }
            }
            return Err(why);
        }
    }
    Ok(())
}

/// Why a program was refused, in one line: the verifier's own verdict (the last line of its log
/// that is not a statistic), else the error.
fn refusal(e: &aya::programs::ProgramError) -> String {
    if let aya::programs::ProgramError::LoadError { verifier_log, .. } = e {
        let log = verifier_log.to_string();
        let statistic = |l: &str| ["processed", "verification time", "stack depth"].iter().any(|s| l.starts_with(s));
        let verdict = log.lines().rev().map(str::trim).find(|l| !l.is_empty() && !statistic(l));
        if let Some(line) = verdict {
            return line.to_string();
        }
    }
    e.to_string().lines().next().unwrap_or_default().to_string()
}

/// Events each CPU submits between wakeups of the reader. Few wakeups, as a wakeup costs more than
/// an event (13–15 µs in a VM); but at most a quarter of the ring buffer unannounced with every
/// CPU just short of its count, so the reader is woken well before it fills between its ticks.
fn wakeup_every(ring_buffer_bytes: u32, cpus: usize) -> u32 {
    // Each record carries an 8-byte header, rounded up to 8 bytes.
    let events = ring_buffer_bytes as usize / (EVENT_SIZE.next_multiple_of(8) + 8);
    (events / (4 * cpus.max(1))).clamp(1, 4096) as u32
}

/// Name of the kernel-side global holding `kind`'s layout.
fn layout_global(kind: EventKind) -> &'static str {
    match kind {
        EventKind::SendReset => "LAYOUT_SEND_RESET",
        EventKind::ReceiveReset => "LAYOUT_RECEIVE_RESET",
        EventKind::SetState => "LAYOUT_SET_STATE",
        EventKind::ErrorReport => "LAYOUT_ERROR_REPORT",
    }
}

/// `tcp:tcp_probe`'s socket and segment fields, or `NO_FIELD` when this kernel's record lacks
/// either (or the tracepoint).
fn tcp_probe_layout(tracefs: &Tracefs) -> TcpProbeLayout {
    let Ok(format) = tracefs.format("tcp", "tcp_probe") else { return TcpProbeLayout::NONE };
    let offset = |name: &str| format.field(name).map(|f| f.offset as u16);
    match (offset("skaddr"), offset("skbaddr")) {
        (Some(skaddr), Some(skbaddr)) => TcpProbeLayout {
            skaddr,
            skbaddr,
            // Without these, every segment is read (sampling needs them).
            sport: offset("sport").unwrap_or(NO_FIELD),
            dport: offset("dport").unwrap_or(NO_FIELD),
            data_len: offset("data_len").unwrap_or(NO_FIELD),
        },
        _ => TcpProbeLayout::NONE,
    }
}

/// The per-segment hook: the tracepoint where its record names the segment, else the kprobe.
fn attach_evidence(ebpf: &mut Ebpf, layout: TcpProbeLayout) -> Result<EvidenceHook, LoadError> {
    if layout.skaddr != NO_FIELD {
        attach(ebpf, "tcp_probe", &[("tcp", "tcp_probe")])?;
        return Ok(EvidenceHook::Tracepoint);
    }
    attach_kprobe(ebpf, "rcv_established_kprobe", &["tcp_rcv_established"]).map_err(|e| {
        LoadError::Evidence(format!(
            "tcp:tcp_probe does not name the segment on this kernel and {e}"
        ))
    })?;
    Ok(EvidenceHook::Kprobe)
}

/// Where `tcp:tcp_destroy_sock`'s record keeps the socket; `NO_FIELD` without the tracepoint.
fn release_layout(tracefs: &Tracefs) -> ReleaseLayout {
    let (group, name) = RELEASE_TRACEPOINT;
    match tracefs.format(group, name).ok().and_then(|format| format.field("skaddr").map(|f| f.offset as u16)) {
        Some(skaddr) => ReleaseLayout { skaddr, _pad: 0 },
        None => ReleaseLayout::NONE,
    }
}

fn attach(ebpf: &mut Ebpf, program: &'static str, tracepoints: &[(&'static str, &'static str)]) -> Result<(), LoadError> {
    let prog: &mut TracePoint = ebpf
        .program_mut(program)
        .ok_or(LoadError::MissingProgram(program))?
        .try_into()
        .map_err(|source| LoadError::Program { program, source })?;
    // Loaded once, attached as often as asked (the `--cost-floor` program serves every hook).
    if prog.fd().is_err() {
        prog.load().map_err(|source| refused(program, source))?;
    }
    for (group, name) in tracepoints {
        prog.attach(group, name).map_err(|source| LoadError::Attach { program, group, name, source })?;
    }
    Ok(())
}

/// `attach` for a raw tracepoint program (only `--cost-floor=raw`), by tracepoint name alone.
fn attach_raw(ebpf: &mut Ebpf, program: &'static str, names: impl Iterator<Item = &'static str>) -> Result<(), LoadError> {
    let prog: &mut RawTracePoint = ebpf
        .program_mut(program)
        .ok_or(LoadError::MissingProgram(program))?
        .try_into()
        .map_err(|source| LoadError::Program { program, source })?;
    prog.load().map_err(|source| refused(program, source))?;
    for name in names {
        prog.attach(name).map_err(|source| LoadError::Attach { program, group: "raw", name, source })?;
    }
    Ok(())
}

/// The error for a program the kernel would not load, its verifier verdict printed first.
fn refused(program: &'static str, source: aya::programs::ProgramError) -> LoadError {
    print_verifier_verdict(program, &source);
    match source {
        aya::programs::ProgramError::LoadError { io_error, .. } => LoadError::Refused { program, error: io_error },
        source => LoadError::Program { program, source },
    }
}

/// The verifier's verdict is in its last lines; the whole log can be thousands.
fn print_verifier_verdict(program: &str, error: &aya::programs::ProgramError) {
    if let aya::programs::ProgramError::LoadError { verifier_log, .. } = error {
        let log = verifier_log.to_string();
        let lines: Vec<&str> = log.lines().collect();
        if lines.is_empty() {
            return; // refused before the verifier ran (permissions, memory): the error says why
        }
        eprintln!("rsttrace: verifier log of {program} (last lines):");
        for line in &lines[lines.len().saturating_sub(8)..] {
            eprintln!("  {line}");
        }
    }
}

/// Attach a kprobe to every function in `functions`, or to none; the caller decides what a
/// failure costs.
fn attach_kprobe(ebpf: &mut Ebpf, program: &'static str, functions: &[&str]) -> Result<(), String> {
    let prog: &mut KProbe = ebpf
        .program_mut(program)
        .ok_or_else(|| format!("program {program} missing from the object"))?
        .try_into()
        .map_err(|e| format!("{program}: {e}"))?;
    prog.load().map_err(|e| {
        print_verifier_verdict(program, &e);
        match e {
            aya::programs::ProgramError::LoadError { .. } => format!("the kernel refused {program}; verifier log above"),
            other => format!("loading {program}: {other}"),
        }
    })?;
    let mut links = Vec::new();
    for function in functions {
        match prog.attach(function, 0) {
            Ok(link) => links.push(link),
            Err(e) => {
                // All or nothing: half the functions probed would make absence look like proof.
                for link in links {
                    let _ = prog.detach(link);
                }
                return Err(format!("kprobe on {function}: {e}"));
            }
        }
    }
    Ok(())
}

pub fn take_ring_buffer(ebpf: &mut Ebpf) -> Result<RingBuf<MapData>, LoadError> {
    let map = ebpf.take_map("EVENTS").ok_or(LoadError::Map("EVENTS"))?;
    RingBuf::try_from(map).map_err(|_| LoadError::Map("EVENTS"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracefs::tests::{kernel_format, KERNELS};

    #[test]
    fn wakeups_leave_most_of_the_ring_buffer_free() {
        // 8 MiB (the default) on 2 CPUs: ~20k events of room, a wakeup per ~2.5k on a CPU.
        let every = wakeup_every(8 << 20, 2);
        assert!((2000..=3000).contains(&every), "{every}");
        // Many CPUs or a small ring: each CPU wakes the reader sooner, within bounds.
        assert!(wakeup_every(8 << 20, 64) < every);
        assert_eq!(wakeup_every(64 << 10, 256), 1);
        assert_eq!(wakeup_every(1 << 30, 1), 4096);
        for (bytes, cpus) in [(8u32 << 20, 2usize), (8 << 20, 64), (1 << 20, 8)] {
            let room = bytes as usize / (EVENT_SIZE + 8);
            assert!(wakeup_every(bytes, cpus) as usize * cpus <= room / 4 + cpus, "{bytes} {cpus}");
        }
    }

    /// The typed programs write their records at fixed offsets: every kernel we have formats of
    /// must lay the records out so, and a layout shifted as PREEMPT_RT shifts it must not match.
    #[test]
    fn typed_records_have_the_layout_of_every_known_kernel() {
        for kernel in KERNELS {
            for (_, tracepoint, event) in TYPED {
                let Some((kind, shape)) = event else { continue };
                let fields = RecordFields::from_format(&kernel_format(kernel, kind.tracepoint().0, tracepoint));
                // Before 6.10, `tcp_send_reset` keeps its classic program.
                if kind == EventKind::SendReset && !fields.has_segment_addresses() {
                    assert!(kernel.starts_with("6.1."), "{kernel}");
                    continue;
                }
                assert_eq!(fields.kernel_layout(), shape, "{kernel} {tracepoint}");
            }
        }
        let mut shifted = SET_STATE_SHAPE;
        shifted.skaddr += 8;
        assert_ne!(shifted, SET_STATE_SHAPE);
    }
}
