//! The `virt-sizer` binary: parse the command line, dispatch, map errors to
//! exit codes (0 ok, 1 test failures / invalid policy, 2 unusable input).

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;
use virt_sizer::cli::{Cli, Command};
use virt_sizer::commands;

// Decoding an AdmissionReview is mostly allocation (a 10 KB Pod is
// ~1,500 JSON values); mimalloc cuts that by a third over glibc's malloc
// (measured in the README's performance section).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Serve(args) => commands::serve::run(args),
        Command::Review(args) => commands::review::run(args),
        Command::Test(args) => commands::test::run(args),
        Command::Policy(command) => commands::policy::run(command),
        Command::Plan(args) => commands::plan::run(args),
        Command::Completions(args) => commands::completions::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) if commands::is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            // Not `eprintln!`: it panics (exit 101) when stderr is closed or full.
            let _ = writeln!(std::io::stderr(), "virt-sizer: {error:#}");
            ExitCode::from(2)
        }
    }
}
