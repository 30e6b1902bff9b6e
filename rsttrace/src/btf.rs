//! Kernel introspection through BTF: the few struct offsets the kernel programs need to read a
//! socket's network namespace (`sock → skc_net → net.ns.inum`). Tracepoint records carry no
//! namespace, and these offsets change between kernels and configs, so they are looked up in
//! `/sys/kernel/btf/vmlinux` at start-up. Only what that lookup needs is parsed: type records
//! and struct/union members, including anonymous nested ones.
use std::{fs, path::Path};

use rsttrace_common::{HolderFields, SockOffsets, StructOffsets, TypedSockFields, NO_OFFSET};

pub const DEFAULT_PATH: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;
const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("cannot read BTF from {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("malformed BTF: {0}")]
    Malformed(&'static str),
    #[error("BTF has no `{0}`")]
    Missing(String),
}

struct Member {
    name_off: u32,
    type_id: u32,
    /// Offset in bits.
    bit_offset: u32,
}

struct Type {
    name_off: u32,
    kind: u32,
    /// `size` or `type` depending on kind.
    size_or_type: u32,
    members: Vec<Member>,
}

pub struct Btf {
    /// Index 0 is the implicit `void` type.
    types: Vec<Type>,
    strings: Vec<u8>,
}

impl Btf {
    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = fs::read(path).map_err(|source| BtfError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&data)
    }

    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        let u16_at = |o: usize| data.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        let u32_at = |o: usize| {
            data.get(o..o + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        if u16_at(0) != Some(MAGIC) {
            return Err(BtfError::Malformed("bad magic (not little-endian BTF)"));
        }
        let header = |o| u32_at(o).map(|v| v as usize).ok_or(BtfError::Malformed("short header"));
        let hdr_len = header(4)?;
        let (type_off, type_len) = (header(8)?, header(12)?);
        let (str_off, str_len) = (header(16)?, header(20)?);
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or(BtfError::Malformed("string section out of bounds"))?
            .to_vec();
        let mut types = vec![Type {
            name_off: 0,
            kind: 0,
            size_or_type: 0,
            members: Vec::new(),
        }];
        let mut at = hdr_len + type_off;
        let end = at + type_len;
        let short = BtfError::Malformed("type section out of bounds");
        while at < end {
            let name_off = u32_at(at).ok_or(BtfError::Malformed("truncated type"))?;
            let info = u32_at(at + 4).ok_or(BtfError::Malformed("truncated type"))?;
            let size_or_type = u32_at(at + 8).ok_or(BtfError::Malformed("truncated type"))?;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            at += 12;
            let mut members = Vec::new();
            let extra = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = at + i * 12;
                        let raw_offset = u32_at(m + 8).ok_or(BtfError::Malformed("truncated member"))?;
                        members.push(Member {
                            name_off: u32_at(m).ok_or(BtfError::Malformed("truncated member"))?,
                            type_id: u32_at(m + 4).ok_or(BtfError::Malformed("truncated member"))?,
                            bit_offset: if kind_flag { raw_offset & 0xff_ffff } else { raw_offset },
                        });
                    }
                    vlen * 12
                }
                KIND_ENUM | KIND_FUNC_PROTO => vlen * 8,
                KIND_DATASEC | KIND_ENUM64 => vlen * 12,
                _ => 0,
            };
            at += extra;
            if at > end {
                return Err(short);
            }
            types.push(Type {
                name_off,
                kind,
                size_or_type,
                members,
            });
        }
        Ok(Self { types, strings })
    }

    fn name(&self, off: u32) -> &[u8] {
        let rest = self.strings.get(off as usize..).unwrap_or(&[]);
        &rest[..rest.iter().position(|b| *b == 0).unwrap_or(rest.len())]
    }

    fn struct_id(&self, name: &str) -> Option<u32> {
        self.types
            .iter()
            .position(|t| t.kind == KIND_STRUCT && self.name(t.name_off) == name.as_bytes() && !t.members.is_empty())
            .map(|i| i as u32)
    }

    /// Follow typedefs and qualifiers to the underlying type.
    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..32 {
            let t = self.types.get(id as usize)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type
                }
                _ => return Some(t),
            }
        }
        None
    }

    /// Byte offset of member `name` in `t`, looking through anonymous structs and unions.
    fn member_offset_in(&self, t: &Type, name: &str, depth: u32) -> Option<u32> {
        if depth > 8 {
            return None;
        }
        for m in &t.members {
            if self.name(m.name_off) == name.as_bytes() {
                return Some(m.bit_offset / 8);
            }
        }
        for m in t.members.iter().filter(|m| m.name_off == 0) {
            let inner = self.resolve(m.type_id)?;
            if matches!(inner.kind, KIND_STRUCT | KIND_UNION) {
                if let Some(off) = self.member_offset_in(inner, name, depth + 1) {
                    return Some(m.bit_offset / 8 + off);
                }
            }
        }
        None
    }

    /// Byte offset of `struct_name.member` (the member may sit in anonymous nested types).
    pub fn member_offset(&self, struct_name: &str, member: &str) -> Result<u32, BtfError> {
        let id = self
            .struct_id(struct_name)
            .ok_or_else(|| BtfError::Missing(format!("struct {struct_name}")))?;
        self.member_offset_in(&self.types[id as usize], member, 0)
            .ok_or_else(|| BtfError::Missing(format!("{struct_name}.{member}")))
    }
}

/// The struct offsets the kernel programs need, each `NO_OFFSET` when this kernel's BTF lacks it
/// (the programs then leave the matching event field empty rather than read a wrong address).
pub fn struct_offsets(btf: &Btf) -> (StructOffsets, SockOffsets, Vec<String>) {
    let mut missing = Vec::new();
    let mut get = |path: &[(&str, &str)]| -> u32 {
        let mut total = 0;
        for (s, m) in path {
            match btf.member_offset(s, m) {
                Ok(off) => total += off,
                Err(e) => {
                    missing.push(e.to_string());
                    return NO_OFFSET;
                }
            }
        }
        total
    };
    // `possible_net_t` wraps the `struct net *` as its first member, so its offset is the pointer's.
    let offsets = StructOffsets {
        sock_net: get(&[("sock", "__sk_common"), ("sock_common", "skc_net")]),
        net_inum: get(&[("net", "ns"), ("ns_common", "inum")]),
        skb_dev: get(&[("sk_buff", "dev")]),
        dev_net: get(&[("net_device", "nd_net")]),
        skb_head: get(&[("sk_buff", "head")]),
        skb_transport_header: get(&[("sk_buff", "transport_header")]),
        skb_network_header: get(&[("sk_buff", "network_header")]),
        sock_cgroup: get(&[("sock", "sk_cgrp_data"), ("sock_cgroup_data", "cgroup")]),
        cgroup_kn: get(&[("cgroup", "kn")]),
        kn_id: get(&[("kernfs_node", "id")]),
        task_group_leader: get(&[("task_struct", "group_leader")]),
        task_comm: get(&[("task_struct", "comm")]),
        task_flags: get(&[("task_struct", "flags")]),
        task_exit_code: get(&[("task_struct", "exit_code")]),
    };
    // `struct tcp_sock` begins with its `struct sock`, so both kinds of field are sk-relative.
    let sock = SockOffsets {
        state: get(&[("sock", "__sk_common"), ("sock_common", "skc_state")]),
        flags: get(&[("sock", "__sk_common"), ("sock_common", "skc_flags")]),
        lingertime: get(&[("sock", "sk_lingertime")]),
        ack_backlog: get(&[("sock", "sk_ack_backlog")]),
        max_ack_backlog: get(&[("sock", "sk_max_ack_backlog")]),
        rcv_nxt: get(&[("tcp_sock", "rcv_nxt")]),
        copied_seq: get(&[("tcp_sock", "copied_seq")]),
        snd_una: get(&[("tcp_sock", "snd_una")]),
        snd_nxt: get(&[("tcp_sock", "snd_nxt")]),
        abort_on_overflow: get(&[("net", "ipv4"), ("netns_ipv4", "sysctl_tcp_abort_on_overflow")]),
        active: 0,
        socket: get(&[("sock", "sk_socket")]),
        err: get(&[("sock", "sk_err")]),
        shutdown: get(&[("sock", "sk_shutdown")]),
        icsk_retransmits: get(&[("inet_connection_sock", "icsk_retransmits")]),
        icsk_probes_out: get(&[("inet_connection_sock", "icsk_probes_out")]),
        icsk_user_timeout: get(&[("inet_connection_sock", "icsk_user_timeout")]),
        icsk_probes_tstamp: get(&[("inet_connection_sock", "icsk_probes_tstamp")]),
        rcv_tstamp: get(&[("tcp_sock", "rcv_tstamp")]),
        total_retrans: get(&[("tcp_sock", "total_retrans")]),
        data_segs_out: get(&[("tcp_sock", "data_segs_out")]),
        data_segs_in: get(&[("tcp_sock", "data_segs_in")]),
        socket_file: get(&[("socket", "file")]),
        file_inode: get(&[("file", "f_inode")]),
        inode_ino: get(&[("inode", "i_ino")]),
        linger2: get(&[("tcp_sock", "linger2")]),
        _pad: 0,
    };
    (offsets, sock, missing)
}

/// The offsets the holder iterator reads (`holders.rs`): the file ones `sock` has already.
pub fn holder_fields(btf: &Btf, sock: &SockOffsets) -> HolderFields {
    HolderFields {
        file_inode: sock.file_inode,
        inode_ino: sock.inode_ino,
        inode_mode: btf.member_offset("inode", "i_mode").unwrap_or(NO_OFFSET),
        task_tgid: btf.member_offset("task_struct", "tgid").unwrap_or(NO_OFFSET),
    }
}

/// What the BTF-typed programs read straight from a socket; `NO_OFFSET` where BTF lacks it.
pub fn typed_sock_fields(btf: &Btf) -> TypedSockFields {
    let common = |member: &str| -> u32 {
        match (btf.member_offset("sock", "__sk_common"), btf.member_offset("sock_common", member)) {
            (Ok(base), Ok(off)) => base + off,
            _ => NO_OFFSET,
        }
    };
    let sock = |member: &str| btf.member_offset("sock", member).unwrap_or(NO_OFFSET);
    let tcp = |member: &str| btf.member_offset("tcp_sock", member).unwrap_or(NO_OFFSET);
    TypedSockFields {
        protocol: sock("sk_protocol"),
        err: sock("sk_err"),
        family: common("skc_family"),
        sport: btf.member_offset("inet_sock", "inet_sport").unwrap_or(NO_OFFSET),
        num: common("skc_num"),
        dport: common("skc_dport"),
        rcv_saddr: common("skc_rcv_saddr"),
        daddr: common("skc_daddr"),
        v6_rcv_saddr: common("skc_v6_rcv_saddr"),
        v6_daddr: common("skc_v6_daddr"),
        state: common("skc_state"),
        total_retrans: tcp("total_retrans"),
        cgroup: match (btf.member_offset("sock", "sk_cgrp_data"), btf.member_offset("sock_cgroup_data", "cgroup")) {
            (Ok(data), Ok(cgroup)) => data + cgroup,
            _ => NO_OFFSET,
        },
        cgroup_kn: btf.member_offset("cgroup", "kn").unwrap_or(NO_OFFSET),
        kn_id: btf.member_offset("kernfs_node", "id").unwrap_or(NO_OFFSET),
        // `possible_net_t` (an unnamed struct) holds just the pointer, with network namespaces
        // configured; without them the verifier refuses the read, and the classic programs
        // serve that kernel.
        net: common("skc_net"),
        net_inum: match (btf.member_offset("net", "ns"), btf.member_offset("ns_common", "inum")) {
            (Ok(ns), Ok(inum)) => ns + inum,
            _ => NO_OFFSET,
        },
        socket: sock("sk_socket"),
        flags: common("skc_flags"),
        shutdown: sock("sk_shutdown"),
        data_segs_in: tcp("data_segs_in"),
        data_segs_out: tcp("data_segs_out"),
        snd_una: tcp("snd_una"),
        snd_nxt: tcp("snd_nxt"),
        lingertime: sock("sk_lingertime"),
        rcv_nxt: tcp("rcv_nxt"),
        copied_seq: tcp("copied_seq"),
        linger2: tcp("linger2"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Build a tiny BTF blob: `struct inner { int a; int b; }`,
    /// `struct outer { int x; union { struct inner; }; int y; }` (with anonymous nesting).
    fn sample() -> Vec<u8> {
        let strings = b"\0int\0a\0b\0inner\0outer\0x\0y\0".to_vec();
        let s = |name: &str| {
            let needle = [name.as_bytes(), b"\0"].concat();
            (strings.windows(needle.len()).position(|w| w == needle.as_slice()).unwrap()) as u32
        };
        let mut types = Vec::new();
        let mut push = |words: &[u32]| words.iter().for_each(|w| types.extend_from_slice(&w.to_le_bytes()));
        // 1: int
        push(&[s("int"), KIND_INT << 24, 4, 32]);
        // 2: struct inner { a @0, b @32 bits }
        push(&[s("inner"), KIND_STRUCT << 24 | 2, 8, s("a"), 1, 0, s("b"), 1, 32]);
        // 3: anonymous union { struct inner; }
        push(&[0, KIND_UNION << 24 | 1, 8, 0, 2, 0]);
        // 4: struct outer { x @0, <anon union> @64 bits, y @128 bits }
        push(&[s("outer"), KIND_STRUCT << 24 | 3, 20, s("x"), 1, 0, 0, 3, 64, s("y"), 1, 128]);
        let mut blob = Vec::new();
        blob.extend_from_slice(&MAGIC.to_le_bytes());
        blob.extend_from_slice(&[1, 0]);
        for v in [24u32, 0, types.len() as u32, types.len() as u32, strings.len() as u32] {
            blob.extend_from_slice(&v.to_le_bytes());
        }
        blob.extend_from_slice(&types);
        blob.extend_from_slice(&strings);
        blob
    }

    #[test]
    fn finds_direct_and_anonymous_nested_members() {
        let btf = Btf::parse(&sample()).unwrap();
        assert_eq!(btf.member_offset("outer", "x").unwrap(), 0);
        assert_eq!(btf.member_offset("outer", "b").unwrap(), 12);
        assert_eq!(btf.member_offset("outer", "y").unwrap(), 16);
        assert!(btf.member_offset("outer", "nope").is_err());
        assert!(btf.member_offset("nope", "x").is_err());
    }

    #[test]
    fn rejects_garbage() {
        assert!(Btf::parse(&[]).is_err());
        assert!(Btf::parse(&[0x9f, 0xeb, 1, 0, 24, 0, 0, 0]).is_err());
        let mut truncated = sample();
        truncated.truncate(40);
        assert!(Btf::parse(&truncated).is_err());
    }

    #[test]
    fn running_kernel_has_every_offset() {
        let path = Path::new(DEFAULT_PATH);
        if !path.exists() {
            panic!("{DEFAULT_PATH} missing: this kernel has no BTF, which rsttrace needs for netns");
        }
        let (o, sock, missing) = struct_offsets(&Btf::from_file(path).unwrap());
        assert!(missing.is_empty(), "{missing:?}");
        assert!(o.sock_net > 0 && o.sock_net < 256, "skc_net at {}", o.sock_net);
        assert!(o.net_inum < 4096 && o.skb_dev < 64 && o.skb_head < 512, "{o:?}");
        // skc_state sits in the first cache line; the tcp_sock sequence fields lie past struct sock.
        assert!(sock.state < 64 && sock.flags > sock.state, "{sock:?}");
        assert!(sock.rcv_nxt > sock.max_ack_backlog && sock.snd_nxt > sock.flags, "{sock:?}");
        // The typed programs walk to the namespace where a helper reads the same place.
        let typed = typed_sock_fields(&Btf::from_file(path).unwrap());
        assert!(typed.complete(), "{typed:?}");
        // The helper reads and the direct ones read the same places.
        assert_eq!(
            (typed.socket, typed.flags, typed.shutdown, typed.data_segs_in, typed.data_segs_out, typed.snd_una, typed.snd_nxt),
            (sock.socket, sock.flags, sock.shutdown, sock.data_segs_in, sock.data_segs_out, sock.snd_una, sock.snd_nxt),
        );
        assert_eq!((typed.net, typed.net_inum), (o.sock_net, o.net_inum), "{typed:?}");
        // The port in `struct sock` sits beside the remote one, as `__portpair` lays them out.
        assert_eq!(typed.num, typed.dport + 2, "{typed:?}");
    }
}
