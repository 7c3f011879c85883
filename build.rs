//! Build script: the commit `virt-sizer --version` names.
//!
//! `VIRT_SIZER_COMMIT` in the build's environment wins (the `Dockerfile`
//! passes it as a build argument: its context has no `.git`). Otherwise
//! `git rev-parse --short HEAD` in the source directory, and `unknown` where
//! that does not answer (no git, or not a checkout).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The environment variable that names the commit, and the one the crate
/// reads (`env!`).
const COMMIT_ENV: &str = "VIRT_SIZER_COMMIT";

fn main() {
    println!("cargo:rerun-if-env-changed={COMMIT_ENV}");
    let given = std::env::var(COMMIT_ENV)
        .ok()
        .map(|commit| commit.trim().to_owned())
        .filter(|commit| !commit.is_empty());
    let commit = given.unwrap_or_else(|| {
        watch_head();
        git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".to_owned())
    });
    println!("cargo:rustc-env={COMMIT_ENV}={commit}");
}

/// What `git ARGS` prints, trimmed, if it succeeds and prints something.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (output.status.success() && !text.is_empty()).then(|| text.to_owned())
}

/// Reruns the script when HEAD moves: a new commit on the branch, or
/// another branch checked out. Only files that exist are named (cargo
/// reruns every build for a missing one); without git, nothing is.
fn watch_head() {
    let Some(git_dir) = git(&["rev-parse", "--git-dir"]).map(PathBuf::from) else {
        return;
    };
    let common_dir = git(&["rev-parse", "--git-common-dir"])
        .map(PathBuf::from)
        .unwrap_or_else(|| git_dir.clone());
    let mut watched = vec![git_dir.join("HEAD"), common_dir.join("packed-refs")];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(common_dir.join(&branch));
        watched.push(git_dir.join(&branch));
    }
    for path in watched.iter().filter(|path| Path::new(path).is_file()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
