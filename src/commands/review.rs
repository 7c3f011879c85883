//! `virt-sizer review`: one AdmissionReview, offline, with the same bytes
//! as the server's response.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::admission::{self, Environment};
use crate::cli::ReviewArgs;
use crate::commands::{VmiSet, load_policy_over, parse_labels, request_from_document};
use crate::documents::read_document;
use crate::sizing::SizingError;

/// Runs `virt-sizer review`.
///
/// # Errors
/// Unusable input (file, policy, review), named.
pub fn run(args: &ReviewArgs) -> anyhow::Result<ExitCode> {
    let policy = load_policy_over(args.policy.as_deref(), args.kubevirt.as_deref())?;
    let vmis = VmiSet::load(&args.vmis)?;
    let namespace_labels = parse_labels(&args.namespace_labels).context("--namespace-labels")?;
    let document = read_document(&args.input)?;
    let request = request_from_document(document, "default", "CREATE")
        .with_context(|| format!("reading {}", args.input.display()))?;
    let vmi = vmis.lookup(&request);
    let environment = Environment {
        policy: &policy,
        namespace_labels: &namespace_labels,
        vmi: vmi.as_lookup(),
    };
    let decision = admission::review(&environment, &request);

    // Standard output carries the server's bytes unchanged (or the patched
    // object); what only the offline CLI can say (a flag to pass, why
    // nothing happened) goes to --explain or standard error.
    let hint = match decision.error() {
        Some(SizingError::VmiNotFound { namespace, name }) if args.vmis.is_empty() => {
            Some(format!(
                "hint: the Pod belongs to VirtualMachineInstance {namespace}/{name}: pass --vmi FILE with it"
            ))
        }
        Some(SizingError::VmiNotFound { namespace, name }) => Some(format!(
            "hint: no --vmi file holds VirtualMachineInstance {namespace}/{name} (the Pod's owner)"
        )),
        _ => None,
    };
    let mut stdout = std::io::stdout().lock();
    if args.explain {
        write!(stdout, "{}", decision.explain())?;
        if let Some(hint) = &hint {
            writeln!(stdout, "{hint}")?;
        }
    } else {
        if args.patched {
            let object = admission::patched_object(&request, &decision)
                .context("applying the patch")?
                .unwrap_or_default();
            writeln!(stdout, "{}", serde_json::to_string_pretty(&object)?)?;
        } else {
            let body = admission::encode_response(&decision)?;
            stdout.write_all(&body)?;
            writeln!(stdout)?;
        }
        stdout.flush()?;
        let mut stderr = std::io::stderr().lock();
        if let Some(reason) = decision.skip_reason() {
            let _ = writeln!(stderr, "virt-sizer: skipped: {reason}");
        }
        if let Some(hint) = &hint {
            let _ = writeln!(stderr, "virt-sizer: {hint}");
        }
    }
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}
