//! Two network namespaces joined by veth, for the soak and the benchmark (the tests have their
//! own harness). Removed on drop.
use std::process::Command;

pub struct Pair {
    pub client: String,
    pub server: String,
    pub client_addr: String,
    pub server_addr: String,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("ip").args(args).status()?;
    anyhow::ensure!(status.success(), "ip {} failed", args.join(" "));
    Ok(())
}

impl Pair {
    pub fn new(tag: &str, subnet: u8) -> anyhow::Result<Self> {
        let pair = Pair {
            client: format!("{tag}-c"),
            server: format!("{tag}-s"),
            client_addr: format!("10.232.{subnet}.1"),
            server_addr: format!("10.232.{subnet}.2"),
        };
        for ns in [&pair.client, &pair.server] {
            // A namespace left by an interrupted run; usually there is none.
            let _ = Command::new("ip").args(["netns", "del", ns]).stderr(std::process::Stdio::null()).status();
            ip(&["netns", "add", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        let (vc, vs) = (format!("{tag}c"), format!("{tag}s"));
        ip(&["link", "add", &vc, "netns", &pair.client, "type", "veth", "peer", "name", &vs, "netns", &pair.server])?;
        ip(&["-n", &pair.client, "addr", "add", &format!("{}/24", pair.client_addr), "dev", &vc])?;
        ip(&["-n", &pair.server, "addr", "add", &format!("{}/24", pair.server_addr), "dev", &vs])?;
        ip(&["-n", &pair.client, "link", "set", &vc, "up"])?;
        ip(&["-n", &pair.server, "link", "set", &vs, "up"])?;
        Ok(pair)
    }
}

impl Pair {
    /// The inodes of the two namespaces, as rsttrace reports them (`netns`).
    pub fn inodes(&self) -> [u64; 2] {
        use std::os::unix::fs::MetadataExt;
        [&self.client, &self.server].map(|ns| std::fs::metadata(format!("/run/netns/{ns}")).map_or(0, |m| m.ino()))
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in [&self.client, &self.server] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
