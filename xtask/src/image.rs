//! `cargo xtask image`: a `FROM scratch` container image holding only rsttrace's static binary
//! (x86_64 musl), built with podman from deploy/container/Containerfile.
//!
//! Nothing is pulled: a scratch image has no base, so no registry, short-name search or
//! signature policy is consulted, and podman's stock configuration on Debian 12 builds it.
//! Building runs no container either (the Containerfile only copies).
use anyhow::Result;

use crate::{
    cmd,
    release::{self, fresh_dir},
};

/// The target whose binaries need no libc from the image: musl, linked statically.
pub const STATIC_TARGET: &str = "x86_64-unknown-linux-musl";
pub const CONTAINERFILE: &str = "deploy/container/Containerfile";
/// The name the image is tagged with, `:VERSION` and `:latest`.
pub const IMAGE: &str = "localhost/rsttrace";

/// Build and tag the image; returns its versioned name (`localhost/rsttrace:VERSION`).
pub fn image() -> Result<String> {
    let workspace = release::workspace()?;
    let binary = release::build(Some(STATIC_TARGET))?;
    // The build context: the binary alone, so nothing else can end up in the image.
    let context = workspace.target_dir.join("container");
    fresh_dir(&context)?;
    release::install_stripped(&binary, &context.join("rsttrace"))?;
    let versioned = format!("{IMAGE}:{}", workspace.version);
    let latest = format!("{IMAGE}:latest");
    let context = context.to_string_lossy();
    cmd("podman", &["build", "--file", CONTAINERFILE, "--tag", &versioned, "--tag", &latest, &context])?;
    Ok(versioned)
}
