//! `virt-sizer completions <shell>`: a completion script generated from the
//! command line's own definition (`clap_complete`), so it never lags behind
//! a verb or a flag.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::CommandFactory as _;

use crate::cli::{Cli, CompletionsArgs};

/// Prints the script for `args.shell` on standard output.
///
/// # Errors
/// Writing to standard output failed.
pub fn run(args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "virt-sizer", &mut script);
    std::io::stdout()
        .write_all(&script)
        .context("writing the completion script")?;
    Ok(ExitCode::SUCCESS)
}
