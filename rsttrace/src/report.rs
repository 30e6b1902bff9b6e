//! What rsttrace tells the operator about one reset or abort: the event contract, explained with
//! every cause in docs/causes.md.
use serde::Serialize;

use crate::event::{Endpoints, Task};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Sent,
    Received,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Sent => "sent",
            Direction::Received => "received",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportType {
    Reset,
    Abort,
}

impl ReportType {
    pub fn name(self) -> &'static str {
        match self {
            ReportType::Reset => "reset",
            ReportType::Abort => "abort",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Application,
    Stack,
    Peer,
    Network,
    Unknown,
}

/// The causes rsttrace reports; docs/causes.md explains each (a unit test keeps it complete).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    NoListener,
    Refused,
    NoSocket,
    AppAbortUnread,
    AppAbortLinger0,
    AppDisconnect,
    DataAfterClose,
    Linger2Abort,
    OrphanMemory,
    ListenOverflow,
    KeepaliveTimeout,
    RetransmitTimeout,
    SynTimeout,
    TimewaitReuse,
    PawsReject,
    InvalidSegment,
    PeerReset,
    Injected,
    ConnectRaceLoser,
    PortGrabbed,
    ListenerClosed,
    SocketDestroyed,
    Unknown,
}

impl Cause {
    pub const ALL: [Cause; 23] = [
        Cause::NoListener, Cause::Refused, Cause::NoSocket, Cause::AppAbortUnread,
        Cause::AppAbortLinger0, Cause::AppDisconnect, Cause::DataAfterClose, Cause::Linger2Abort,
        Cause::OrphanMemory, Cause::ListenOverflow, Cause::KeepaliveTimeout,
        Cause::RetransmitTimeout, Cause::SynTimeout, Cause::TimewaitReuse, Cause::PawsReject,
        Cause::InvalidSegment, Cause::PeerReset, Cause::Injected, Cause::ConnectRaceLoser,
        Cause::PortGrabbed, Cause::ListenerClosed, Cause::SocketDestroyed, Cause::Unknown,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Cause::NoListener => "no_listener",
            Cause::Refused => "refused",
            Cause::NoSocket => "no_socket",
            Cause::AppAbortUnread => "app_abort_unread",
            Cause::AppAbortLinger0 => "app_abort_linger0",
            Cause::AppDisconnect => "app_disconnect",
            Cause::ListenerClosed => "listener_closed",
            Cause::SocketDestroyed => "socket_destroyed",
            Cause::DataAfterClose => "data_after_close",
            Cause::Linger2Abort => "linger2_abort",
            Cause::OrphanMemory => "orphan_memory",
            Cause::ListenOverflow => "listen_overflow",
            Cause::KeepaliveTimeout => "keepalive_timeout",
            Cause::RetransmitTimeout => "retransmit_timeout",
            Cause::SynTimeout => "syn_timeout",
            Cause::TimewaitReuse => "timewait_reuse",
            Cause::PawsReject => "paws_reject",
            Cause::InvalidSegment => "invalid_segment",
            Cause::PeerReset => "peer_reset",
            Cause::Injected => "injected",
            Cause::ConnectRaceLoser => "connect_race_loser",
            Cause::PortGrabbed => "port_grabbed",
            Cause::Unknown => "unknown",
        }
    }
}

impl Origin {
    pub fn name(self) -> &'static str {
        match self {
            Origin::Application => "application",
            Origin::Stack => "stack",
            Origin::Peer => "peer",
            Origin::Network => "network",
            Origin::Unknown => "unknown",
        }
    }
}

/// How the reported process was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Attribution {
    /// The task the socket belongs to, learned in process context on that socket.
    SocketOwner,
    /// The task running when the kernel acted, in a path known to run in the owner's system call.
    CurrentTask,
    /// The process holding the socket's file when the reset was reported, or the one that let
    /// go of the file last before that (its owner was never seen connecting, listening,
    /// closing or shutting it down: an accepted connection, one older than rsttrace).
    SocketFile,
    None,
}

impl Attribution {
    pub fn name(self) -> &'static str {
        match self {
            Attribution::SocketOwner => "socket_owner",
            Attribution::CurrentTask => "current_task",
            Attribution::SocketFile => "socket_file",
            Attribution::None => "none",
        }
    }
}

/// The classifier's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub cause: Cause,
    pub origin: Origin,
    pub benign: bool,
    /// One line a person can act on; a fixed sentence is not copied.
    pub why: std::borrow::Cow<'static, str>,
}

/// One reset or abort, ready for output.
#[derive(Clone, Debug)]
pub struct Report {
    pub kind: ReportType,
    pub direction: Option<Direction>,
    pub verdict: Verdict,
    pub kernel_reason: Option<&'static str>,
    /// State of the local socket when it happened; `CLOSE` when there was no socket.
    pub state: &'static str,
    pub endpoints: Endpoints,
    pub owner: Option<Task>,
    pub attribution: Attribution,
    pub netns: u32,
    /// The cgroup v2 id the socket was created in (0: unknown), and what its path says.
    pub cgroup: u64,
    pub workload: Option<std::sync::Arc<crate::workload::Workload>>,
    /// The owner's thread name, when a thread other than the main one acted (`owner.comm` is
    /// then the process's name).
    pub thread: Option<crate::event::Comm>,
    /// CLOCK_MONOTONIC nanoseconds; output turns it into wall-clock time.
    pub ts_ns: u64,
    /// For a received reset whose sender is also on this host: the sender's cause.
    pub peer_cause: Option<Cause>,
    /// The task that was running (often not the owner), for the curious; `None` if not captured.
    pub current: Option<Task>,
    pub retransmits: u32,
    /// This host's socket opened the connection (connect()): its local port is an ephemeral
    /// one, and the remote port names the service.
    pub active_open: bool,
    /// Received resets: how the RST and the peer's segments arrived.
    pub evidence: Option<crate::evidence::Evidence>,
}

#[cfg(test)]
mod tests {
    use super::Cause;

    /// The operator's reference explains every cause the code can report, and no other.
    #[test]
    fn the_cause_reference_has_a_section_for_every_cause() {
        let doc = include_str!("../../docs/causes.md");
        let sections: Vec<&str> = doc.lines().filter_map(|l| l.strip_prefix("### ")).collect();
        let names: Vec<&str> = Cause::ALL.iter().map(|c| c.name()).collect();
        for name in &names {
            assert!(sections.contains(name), "docs/causes.md has no section for {name}");
        }
        for section in &sections {
            assert!(names.contains(section), "docs/causes.md explains {section}, which rsttrace never reports");
        }
    }
}
