//! `virt-sizer policy check FILE` and `virt-sizer policy default`.

use std::io::Write as _;
use std::process::ExitCode;

use crate::cli::PolicyCommand;
use crate::documents::PolicyFile;
use crate::sizing::policy::{BUILTIN_POLICY_YAML, MAX_LISTED_PROBLEMS, ValidPolicy};

/// Runs `virt-sizer policy …`. An invalid policy prints every problem with
/// its field path and exits 1.
///
/// # Errors
/// The file cannot be read, or standard output cannot be written.
pub fn run(command: &PolicyCommand) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout().lock();
    let code = match command {
        PolicyCommand::Default => {
            write!(stdout, "{BUILTIN_POLICY_YAML}")?;
            ExitCode::SUCCESS
        }
        PolicyCommand::Check { file } => {
            let text = PolicyFile::new(file).read()?;
            match ValidPolicy::from_yaml(&text) {
                Ok(policy) => {
                    writeln!(
                        stdout,
                        "{}: ok ({} profiles, {} rules, {} Kata classes, {})",
                        file.display(),
                        policy.profiles.len(),
                        policy.rules.len(),
                        policy.kata.runtime_classes.len(),
                        policy.digest
                    )?;
                    // What is valid but not what the author may mean (a
                    // rule that never applies, a release newer than the
                    // overhead table): the validating webhook's warnings.
                    for warning in &policy.warnings {
                        writeln!(stdout, "{}: warning: {warning}", file.display())?;
                    }
                    ExitCode::SUCCESS
                }
                Err(errors) => {
                    for error in &errors.listed {
                        writeln!(stdout, "{}: {error}", file.display())?;
                    }
                    if errors.n_more > 0 {
                        writeln!(
                            stdout,
                            "{}: and {} more problems (the first {MAX_LISTED_PROBLEMS} are listed)",
                            file.display(),
                            errors.n_more
                        )?;
                    }
                    writeln!(stdout, "{} problem(s)", errors.len())?;
                    ExitCode::from(1)
                }
            }
        }
    };
    stdout.flush()?;
    Ok(code)
}
