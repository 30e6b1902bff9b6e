//! tracefs: finding (or mounting) it and reading tracepoint `format` files.
//!
//! Field offsets are never hard-coded: the running kernel says where each field sits, which
//! copes with `tcp_send_reset`'s two layouts (pre-6.10 `sport`/`dport`/`saddr[4]`…, and the
//! current `reason` + `saddr[28]` sockaddr blobs) and with PREEMPT_RT's larger common header.
//! Parsing is pure and unit-tested on real format files of Linux 6.1, 6.12 and 6.18.
use std::{
    collections::HashMap,
    ffi::CString,
    fs,
    path::{Path, PathBuf},
};

#[derive(Debug, thiserror::Error)]
pub enum TracefsError {
    #[error("tracefs is not mounted and mounting it at {path} failed: {source} (mount it with `mount -t tracefs nodev {path}`)")]
    Mount {
        path: String,
        source: std::io::Error,
    },
    #[error("tracepoint {group}:{name} does not exist on this kernel ({path} missing)")]
    MissingTracepoint {
        group: String,
        name: String,
        path: String,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("malformed format file {path}: {reason}")]
    Malformed { path: String, reason: String },
}

/// One `field:` line of a format file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    /// The C declaration without the name, e.g. `const void *`, `__u8` (array size dropped).
    pub c_type: String,
    pub offset: usize,
    pub size: usize,
    pub signed: bool,
}

/// A parsed format file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Format {
    pub name: String,
    pub id: u32,
    pub fields: Vec<Field>,
    /// `value → name` tables of every `__print_symbolic(REC->field, …)`, keyed by field name.
    pub symbols: HashMap<String, HashMap<i64, String>>,
}

impl Format {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Bytes from the start of the record to the end of its last field.
    pub fn record_size(&self) -> usize {
        self.fields.iter().map(|f| f.offset + f.size).max().unwrap_or(0)
    }
}

/// Parse the text of a tracefs `format` file.
pub fn parse_format(text: &str) -> Result<Format, String> {
    let mut format = Format::default();
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix("name:") {
            format.name = name.trim().to_string();
        } else if let Some(id) = line.strip_prefix("ID:") {
            format.id = id.trim().parse().map_err(|_| format!("bad ID line `{line}`"))?;
        } else if line.starts_with("field:") {
            format.fields.push(parse_field(line)?);
        } else if let Some(print_fmt) = line.strip_prefix("print fmt:") {
            format.symbols = parse_symbol_tables(print_fmt);
        }
    }
    if format.fields.is_empty() {
        return Err("no field lines".into());
    }
    Ok(format)
}

/// `field:const void * skaddr;	offset:16;	size:8;	signed:0;`
fn parse_field(line: &str) -> Result<Field, String> {
    let mut decl = None;
    let (mut offset, mut size, mut signed) = (None, None, None);
    for part in line.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part
            .split_once(':')
            .ok_or_else(|| format!("bad field part `{part}` in `{line}`"))?;
        let number = || value.trim().parse::<usize>().map_err(|_| format!("bad number in `{line}`"));
        match key.trim() {
            "field" => decl = Some(value.trim()),
            "offset" => offset = Some(number()?),
            "size" => size = Some(number()?),
            "signed" => signed = Some(number()? != 0),
            _ => {}
        }
    }
    let decl = decl.ok_or_else(|| format!("no declaration in `{line}`"))?;
    let without_array = decl.split('[').next().unwrap_or(decl).trim_end();
    // The name is the trailing identifier; step over the whole character before it (format
    // files are ASCII, but a corrupt one must not split a UTF-8 character).
    let name_start = without_array
        .char_indices()
        .rev()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
        .map_or(0, |(i, c)| i + c.len_utf8());
    let name = &without_array[name_start..];
    if name.is_empty() || without_array[..name_start].trim().is_empty() {
        return Err(format!("field needs a type and a name: `{line}`"));
    }
    Ok(Field {
        name: name.to_string(),
        c_type: without_array[..name_start].trim().to_string(),
        offset: offset.ok_or_else(|| format!("no offset in `{line}`"))?,
        size: size.ok_or_else(|| format!("no size in `{line}`"))?,
        signed: signed.unwrap_or(false),
    })
}

/// Extract `__print_symbolic(REC->reason, { 0, "NOT_SPECIFIED" }, { 1, "NO_SOCKET" }, …)` tables,
/// so reason names come from the running kernel rather than a copy of its header.
fn parse_symbol_tables(print_fmt: &str) -> HashMap<String, HashMap<i64, String>> {
    let mut tables = HashMap::new();
    let mut rest = print_fmt;
    while let Some(start) = rest.find("__print_symbolic(REC->") {
        rest = &rest[start + "__print_symbolic(REC->".len()..];
        let Some(comma) = rest.find(',') else { break };
        let field = rest[..comma].trim().to_string();
        rest = &rest[comma..];
        let mut table = HashMap::new();
        // Entries run until the call's closing parenthesis: `{ value, "NAME" }` pairs.
        let end = rest.find(')').unwrap_or(rest.len());
        for entry in rest[..end].split('{').skip(1) {
            let entry = entry.split('}').next().unwrap_or("");
            if let Some((value, name)) = entry.split_once(',') {
                if let Ok(value) = value.trim().parse::<i64>() {
                    table.insert(value, name.trim().trim_matches('"').to_string());
                }
            }
        }
        if !table.is_empty() {
            tables.insert(field, table);
        }
        rest = &rest[end..];
    }
    tables
}

/// The mounted tracefs (or a prepared stand-in directory).
#[derive(Clone, Debug)]
pub struct Tracefs {
    root: PathBuf,
}

pub const DEFAULT_ROOT: &str = "/sys/kernel/tracing";

impl Tracefs {
    /// Use the given root as is (tests point this at prepared directories).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// tracefs is mounted somewhere (readable or not: that is a permission question).
    pub fn is_mounted() -> bool {
        fs::read_to_string("/proc/self/mounts")
            .is_ok_and(|m| m.lines().any(|l| l.split_whitespace().nth(2) == Some("tracefs")))
    }

    /// Find tracefs at its standard place, mounting it there when it is not mounted yet.
    /// Returns whether this call mounted it.
    pub fn find_or_mount() -> Result<(Self, bool), TracefsError> {
        let root = Path::new(DEFAULT_ROOT);
        if root.join("events").is_dir() {
            return Ok((Self::at(root), false));
        }
        // Old setups expose it under debugfs.
        let legacy = Path::new("/sys/kernel/debug/tracing");
        if legacy.join("events").is_dir() {
            return Ok((Self::at(legacy), false));
        }
        mount_tracefs(root)?;
        Ok((Self::at(root), true))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn format_path(&self, group: &str, name: &str) -> PathBuf {
        self.root.join("events").join(group).join(name).join("format")
    }

    pub fn format(&self, group: &str, name: &str) -> Result<Format, TracefsError> {
        let path = self.format_path(group, name);
        let text = fs::read_to_string(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                TracefsError::MissingTracepoint {
                    group: group.into(),
                    name: name.into(),
                    path: path.display().to_string(),
                }
            } else {
                TracefsError::Read {
                    path: path.display().to_string(),
                    source,
                }
            }
        })?;
        parse_format(&text).map_err(|reason| TracefsError::Malformed {
            path: path.display().to_string(),
            reason,
        })
    }
}

fn mount_tracefs(root: &Path) -> Result<(), TracefsError> {
    let err = |source| TracefsError::Mount {
        path: root.display().to_string(),
        source,
    };
    let target = CString::new(root.as_os_str().as_encoded_bytes()).expect("path has no NUL");
    // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call.
    let rc = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn kernel_format(kernel: &str, group: &str, name: &str) -> Format {
        let path = format!(
            "{}/testdata/kernels/{kernel}/{group}/{name}.format",
            env!("CARGO_MANIFEST_DIR")
        );
        parse_format(&fs::read_to_string(&path).unwrap()).unwrap()
    }

    pub const KERNELS: [&str; 3] = ["6.1.176-debian-cloud", "6.12.117-debian-cloud", "6.18.44-host"];

    #[test]
    fn send_reset_current_layout() {
        let f = kernel_format("6.18.44-host", "tcp", "tcp_send_reset");
        assert_eq!(f.name, "tcp_send_reset");
        assert_eq!(f.id, 2280);
        let skaddr = f.field("skaddr").unwrap();
        assert_eq!((skaddr.offset, skaddr.size, skaddr.c_type.as_str()), (16, 8, "const void *"));
        assert_eq!(f.field("reason").unwrap().offset, 28);
        assert_eq!(f.field("saddr").unwrap().size, 28);
        assert_eq!(f.field("daddr").unwrap().offset, 60);
        assert!(f.field("sport").is_none());
        assert_eq!(f.record_size(), 88);
        assert_eq!(f.symbols["reason"][&1], "NO_SOCKET");
        assert_eq!(f.symbols["reason"][&14], "TCP_STATE");
    }

    #[test]
    fn send_reset_pre_6_10_layout() {
        let f = kernel_format("6.1.176-debian-cloud", "tcp", "tcp_send_reset");
        assert!(f.field("reason").is_none());
        assert_eq!(f.field("sport").unwrap().offset, 28);
        assert_eq!(f.field("family").unwrap().offset, 32);
        assert_eq!(f.field("saddr").unwrap().size, 4);
        assert_eq!(f.field("saddr_v6").unwrap().offset, 42);
        assert_eq!(f.field("daddr_v6").unwrap().size, 16);
        assert_eq!(f.record_size(), 74);
        // The state table uses kernel macro names, not numbers: nothing parseable, no table.
        assert!(!f.symbols.contains_key("state"));
    }

    #[test]
    fn every_kernel_has_the_fields_we_rely_on() {
        for kernel in KERNELS {
            let set_state = kernel_format(kernel, "sock", "inet_sock_set_state");
            for name in ["skaddr", "oldstate", "newstate", "sport", "dport", "family", "protocol"] {
                assert!(set_state.field(name).is_some(), "{kernel} inet_sock_set_state.{name}");
            }
            let receive = kernel_format(kernel, "tcp", "tcp_receive_reset");
            assert!(receive.field("skaddr").is_some(), "{kernel}");
            let report = kernel_format(kernel, "sock", "inet_sk_error_report");
            assert!(report.field("error").is_some(), "{kernel}");
        }
    }

    /// PREEMPT_RT kernels (before 6.12) add `common_preempt_lazy_count` and
    /// `common_migrate_disable` to the common header, shifting every field.
    pub const PREEMPT_RT_SEND_RESET: &str = "name: tcp_send_reset
ID: 1400
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;
\tfield:unsigned char common_migrate_disable;\toffset:8;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_lazy_count;\toffset:9;\tsize:1;\tsigned:0;

\tfield:const void * skbaddr;\toffset:16;\tsize:8;\tsigned:0;
\tfield:const void * skaddr;\toffset:24;\tsize:8;\tsigned:0;
\tfield:int state;\toffset:32;\tsize:4;\tsigned:1;
\tfield:enum sk_rst_reason reason;\toffset:36;\tsize:4;\tsigned:0;
\tfield:__u8 saddr[28];\toffset:40;\tsize:28;\tsigned:0;
\tfield:__u8 daddr[28];\toffset:68;\tsize:28;\tsigned:0;

print fmt: \"skbaddr=%p skaddr=%p src=%pISpc dest=%pISpc state=%s reason=%s\", REC->skbaddr, REC->skaddr, REC->saddr, REC->daddr, REC->state ? __print_symbolic(REC->state, { TCP_ESTABLISHED, \"TCP_ESTABLISHED\" }) : \"UNKNOWN\", __print_symbolic(REC->reason, { 0, \"NOT_SPECIFIED\" }, { 1, \"NO_SOCKET\" })
";

    #[test]
    fn preempt_rt_header_shifts_fields() {
        let f = parse_format(PREEMPT_RT_SEND_RESET).unwrap();
        assert_eq!(f.field("common_migrate_disable").unwrap().offset, 8);
        assert_eq!(f.field("skaddr").unwrap().offset, 24);
        assert_eq!(f.field("reason").unwrap().offset, 36);
        assert_eq!(f.record_size(), 96);
        assert_eq!(f.symbols["reason"][&1], "NO_SOCKET");
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        assert!(parse_format("").is_err());
        assert!(parse_format("name: x\nformat:\n\tfield:int;\toffset:0;\tsize:4;\n").is_err());
        assert!(parse_format("\tfield:int a;\toffset:zero;\tsize:4;\tsigned:1;\n").is_err());
        assert!(parse_format("\tfield:int a;\tsize:4;\n").is_err());
        // Found by the fuzzer: a non-ASCII byte before the name.
        assert!(parse_format("field:\u{FFFD}").is_err());
        assert!(parse_format("\tfield:int \u{FFFD}x;\toffset:8;\tsize:4;\n").is_ok());
        let ok = parse_format("\tfield:int a;\toffset:8;\tsize:4;\tsigned:1;\n").unwrap();
        assert!(ok.fields[0].signed);
    }

    #[test]
    fn missing_tracepoint_names_it() {
        let dir = std::env::temp_dir().join(format!("rsttrace-tracefs-{}", std::process::id()));
        fs::create_dir_all(dir.join("events/tcp")).unwrap();
        let err = Tracefs::at(&dir).format("tcp", "tcp_send_reset").unwrap_err();
        assert!(err.to_string().contains("tcp:tcp_send_reset does not exist"), "{err}");
        fs::remove_dir_all(dir).unwrap();
    }
}
