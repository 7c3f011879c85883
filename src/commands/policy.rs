//! `virt-sizer policy check FILE` and `virt-sizer policy default`.

use std::process::ExitCode;

use anyhow::Context as _;

use crate::cli::PolicyCommand;
use crate::sizing::policy::{BUILTIN_POLICY_YAML, ValidPolicy};

/// Runs `virt-sizer policy …`. An invalid policy prints every problem with
/// its field path and exits 1.
///
/// # Errors
/// The file cannot be read.
pub fn run(command: &PolicyCommand) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Default => {
            print!("{BUILTIN_POLICY_YAML}");
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Check { file } => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            match ValidPolicy::from_yaml(&text) {
                Ok(policy) => {
                    println!(
                        "{}: ok ({} profiles, {} rules, {} Kata classes, {})",
                        file.display(),
                        policy.profiles.len(),
                        policy.rules.len(),
                        policy.kata.runtime_classes.len(),
                        policy.digest
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(errors) => {
                    for error in &errors.0 {
                        println!("{}: {error}", file.display());
                    }
                    println!("{} problem(s)", errors.0.len());
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}
