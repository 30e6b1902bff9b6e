//! How an ELF executable is linked, read from its program headers: whether it names a dynamic
//! loader (PT_INTERP) and how many shared libraries its dynamic section needs (DT_NEEDED).
//! A static binary, static-pie included, has neither.

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;

#[derive(Debug, PartialEq)]
pub struct Linking {
    /// The loader path PT_INTERP names, if any.
    pub interpreter: Option<String>,
    /// DT_NEEDED entries: shared libraries the loader must map.
    pub needed_libraries: usize,
}

impl Linking {
    pub fn is_static(&self) -> bool {
        self.interpreter.is_none() && self.needed_libraries == 0
    }
}

/// Read a little-endian 64-bit ELF file's linking; anything else is an error.
pub fn linking(file: &[u8]) -> Result<Linking, String> {
    if file.get(..6) != Some(b"\x7fELF\x02\x01") {
        return Err("not a little-endian 64-bit ELF file".into());
    }
    let phoff = u64_at(file, 0x20)? as usize;
    let phentsize = u16_at(file, 0x36)? as usize;
    let phnum = u16_at(file, 0x38)? as usize;
    let mut linking = Linking { interpreter: None, needed_libraries: 0 };
    for header in (0..phnum).map(|i| phoff + i * phentsize) {
        let offset = u64_at(file, header + 8)? as usize;
        let size = u64_at(file, header + 32)? as usize;
        let contents = file.get(offset..offset + size).ok_or("segment past the end of the file")?;
        match u32_at(file, header)? {
            PT_INTERP => linking.interpreter = Some(String::from_utf8_lossy(contents).trim_end_matches('\0').to_string()),
            PT_DYNAMIC => linking.needed_libraries += needed_entries(contents)?,
            _ => {}
        }
    }
    Ok(linking)
}

/// DT_NEEDED entries of a dynamic section (16-byte tag/value pairs up to DT_NULL).
fn needed_entries(dynamic: &[u8]) -> Result<usize, String> {
    let mut needed = 0;
    for entry in (0..dynamic.len() / 16).map(|i| i * 16) {
        match u64_at(dynamic, entry)? {
            DT_NULL => break,
            DT_NEEDED => needed += 1,
            _ => {}
        }
    }
    Ok(needed)
}

fn bytes_at<const N: usize>(file: &[u8], at: usize) -> Result<[u8; N], String> {
    file.get(at..at + N).and_then(|b| b.try_into().ok()).ok_or_else(|| format!("truncated ELF file (offset {at})"))
}

fn u16_at(file: &[u8], at: usize) -> Result<u16, String> {
    bytes_at(file, at).map(u16::from_le_bytes)
}

fn u32_at(file: &[u8], at: usize) -> Result<u32, String> {
    bytes_at(file, at).map(u32::from_le_bytes)
}

fn u64_at(file: &[u8], at: usize) -> Result<u64, String> {
    bytes_at(file, at).map(u64::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test binary itself is linked against glibc: the reader must see that, or a "static"
    /// verdict elsewhere would mean nothing.
    #[test]
    fn a_glibc_executable_names_its_loader_and_libraries() {
        let me = linking(&std::fs::read("/proc/self/exe").unwrap()).unwrap();
        assert!(me.interpreter.as_deref().is_some_and(|i| i.contains("ld-linux")), "{me:?}");
        assert!(me.needed_libraries >= 1, "{me:?}");
        assert!(!me.is_static());
    }

    #[test]
    fn other_files_are_refused() {
        assert!(linking(b"#!/bin/sh\n").is_err());
        assert!(linking(b"\x7fELF\x02\x01\x01").is_err(), "truncated");
    }
}
