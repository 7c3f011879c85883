//! The binary's verbs and exit codes, run on the fixtures.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Output, Stdio};

mod completions;
mod pipes;
mod plan;
mod policy;
mod review;
mod test_verb;
mod version;

fn virt_sizer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_virt-sizer"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
