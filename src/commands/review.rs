//! `virt-sizer review`: one AdmissionReview, offline, with the same bytes
//! as the server's response.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::admission::{self, Environment};
use crate::cli::ReviewArgs;
use crate::commands::{VmiSet, load_policy, parse_labels, read_document, request_from_document};

/// Runs `virt-sizer review`.
///
/// # Errors
/// Unusable input (file, policy, review), named.
pub fn run(args: &ReviewArgs) -> anyhow::Result<ExitCode> {
    let policy = load_policy(args.policy.as_deref())?;
    let vmis = VmiSet::load(&args.vmis)?;
    let namespace_labels = parse_labels(&args.namespace_labels).context("--namespace-labels")?;
    let document = read_document(&args.input)?;
    let request = request_from_document(document, "default", "CREATE")
        .with_context(|| format!("reading {}", args.input.display()))?;
    let vmi = admission::launcher_vmi(&request).and_then(|reference| vmis.find(&reference));
    let environment = Environment {
        policy: &policy,
        namespace_labels: &namespace_labels,
        quota: None,
        vmi,
        vmi_unavailable: None,
    };
    let decision = admission::review(&environment, &request);

    let mut stdout = std::io::stdout().lock();
    if args.explain {
        write!(stdout, "{}", decision.explain())?;
    }
    if args.patched {
        let object = admission::patched_object(&request, &decision)
            .context("applying the patch")?
            .unwrap_or_default();
        writeln!(stdout, "{}", serde_json::to_string_pretty(&object)?)?;
    }
    if !args.explain && !args.patched {
        let body = admission::encode_response(&decision)?;
        stdout.write_all(&body)?;
        writeln!(stdout)?;
    }
    Ok(ExitCode::SUCCESS)
}
