//! Output into a pipe that closes, or a reader that stops early.

use super::*;

/// Runs the binary with its standard output a pipe whose reader is already
/// gone, so the first write fails with EPIPE.
fn run_into_a_closed_pipe(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let child = Command::new(env!("CARGO_BIN_EXE_virt-sizer"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child.wait_with_output().expect("wait")
}

#[test]
fn a_closed_pipe_ends_quietly_with_success() {
    for args in [
        &[
            "review",
            "--policy",
            "examples/policy.yaml",
            "--vmi",
            "examples/vmi-dev.yaml",
            "examples/launcher-pod-dev.json",
        ][..],
        &["review", "--explain", "examples/launcher-pod-dev.json"],
        &["test", "tests/fixtures/cases"],
        &["test", "tests/fixtures/cases", "--output", "json"],
        &["policy", "default"],
        &["policy", "check", "tests/fixtures/policies/team.yaml"],
        &["plan", "--node", "cpu=64,memory=256Gi", "--vm", "4x16Gi"],
    ] {
        let output = run_into_a_closed_pipe(args);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(output.stderr.is_empty(), "{args:?}: {}", stderr(&output));
    }
}

#[test]
fn a_reader_that_stops_early_is_not_an_error() {
    // `virt-sizer test … | head -c 10`: the reader leaves mid-stream.
    let mut child = Command::new(env!("CARGO_BIN_EXE_virt-sizer"))
        .args(["test", "tests/fixtures/cases"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut head = [0_u8; 10];
    child
        .stdout
        .take()
        .expect("stdout")
        .read_exact(&mut head)
        .expect("10 bytes");
    let output = child.wait_with_output().expect("wait");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(output.stderr.is_empty(), "{}", stderr(&output));
}
