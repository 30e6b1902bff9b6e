//! A scratch directory of one test, removed with everything in it when the guard drops, also
//! when the test fails.
use std::path::{Path, PathBuf};

pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// `/tmp/rsttrace-NAME-PID`, empty: a leftover of an earlier run with the same pid is
    /// removed first.
    pub fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("rsttrace-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
