//! The programs a benchmark runs beside the workspace's code: release binaries of this
//! workspace and reference tools found on PATH.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Context;

use crate::report::progress;

/// A release binary of this workspace next to the bench binary, built from the current sources.
pub fn release_binary(name: &str) -> anyhow::Result<PathBuf> {
    let beside = std::env::current_exe()?
        .parent()
        .context("no directory of the bench binary")?
        .join(name);
    // Built every time (cargo does nothing when it is up to date): a binary left from older
    // sources would otherwise be measured in their place.
    progress(&format!(
        "building the {name} binary (cargo build --release -p {name})"
    ));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", name])
        .status()
        .context("cannot run cargo to build the binary under test")?;
    anyhow::ensure!(status.success(), "cannot build {name}");
    anyhow::ensure!(beside.exists(), "no {name} binary at {}", beside.display());
    Ok(beside)
}

pub fn which(program: &str) -> anyhow::Result<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.exists())
        .with_context(|| format!("{program} is not on PATH"))
}
