//! A minimal writer of the `newc` cpio format the kernel unpacks as an initramfs
//! (Documentation/driver-api/early-userspace/buffer-format.rst). Uncompressed: the kernel
//! accepts it as is, and it saves the guest a decompression under TCG.
use std::collections::BTreeSet;

#[derive(Default)]
pub struct Archive {
    bytes: Vec<u8>,
    dirs: BTreeSet<String>,
    next_inode: u32,
}

impl Archive {
    /// A regular file at `path` (absolute, inside the guest), parents created as needed.
    pub fn file(&mut self, path: &str, data: &[u8], mode: u32) {
        self.parents(path);
        self.entry(path, 0o100000 | mode, data);
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.parents(path);
        self.entry(path, 0o120777, target.as_bytes());
    }

    pub fn dir(&mut self, path: &str) {
        let path = path.trim_end_matches('/');
        if path.is_empty() || self.dirs.contains(path) {
            return;
        }
        self.parents(path);
        self.dirs.insert(path.to_string());
        self.entry(path, 0o040755, &[]);
    }

    fn parents(&mut self, path: &str) {
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
    }

    fn entry(&mut self, path: &str, mode: u32, data: &[u8]) {
        let name = path.trim_start_matches('/');
        self.next_inode += 1;
        let fields = [self.next_inode, mode, 0, 0, 1, 0, data.len() as u32, 0, 0, 0, 0, name.len() as u32 + 1, 0];
        self.bytes.extend_from_slice(b"070701");
        for field in fields {
            self.bytes.extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while self.bytes.len() % 4 != 0 {
            self.bytes.push(0);
        }
    }

    /// The archive with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_aligned_and_parents_come_first() {
        let mut a = Archive::default();
        a.file("/a/b/c", b"hello", 0o644);
        let bytes = a.finish();
        let text = String::from_utf8_lossy(&bytes);
        let a_at = text.find("a\0").unwrap();
        let ab_at = text.find("a/b\0").unwrap();
        let abc_at = text.find("a/b/c\0").unwrap();
        assert!(a_at < ab_at && ab_at < abc_at);
        assert_eq!(bytes.len() % 4, 0);
        assert!(bytes.ends_with(b"TRAILER!!!\0\0\0\0"));
        // Header of the file: mode 0100644, size 5.
        let header = &text[abc_at - 110..abc_at];
        assert!(header.starts_with("070701"));
        assert_eq!(&header[14..22], "000081a4");
        assert_eq!(&header[54..62], "00000005");
    }
}
