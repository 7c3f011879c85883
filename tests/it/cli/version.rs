//! `--version`: the crate version and the commit the binary was built from.

use super::*;

/// What `git rev-parse --short HEAD` says in the repository, or `unknown`
/// where git does not answer (the build script's own fallback).
fn commit() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .filter(|commit| !commit.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

#[test]
fn version_names_the_release_and_the_commit() {
    let version = format!("{} ({})\n", env!("CARGO_PKG_VERSION"), commit());
    for args in [&["--version"][..], &["-V"]] {
        let output = virt_sizer(args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        assert_eq!(stdout(&output), format!("virt-sizer {version}"), "{args:?}");
    }
    // Each verb says the same after its own name (clap's `virt-sizer-serve`).
    for verb in ["serve", "test", "review"] {
        let output = virt_sizer(&[verb, "--version"]);
        assert!(output.status.success(), "{verb}: {}", stderr(&output));
        assert_eq!(
            stdout(&output),
            format!("virt-sizer-{verb} {version}"),
            "{verb}"
        );
    }
}
