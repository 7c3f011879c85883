//! `virt-sizer test DIR`: CI policy tests.
//!
//! Every `*.yaml`/`*.yml` under DIR whose top level has `expect:` is a case;
//! paths in it are relative to the case file. Each case runs the very same
//! [`admission::review`] as the server. A failure prints a diff; the last
//! line is `N passed, N failed`. Exit 0 when all pass, 1 on any failure, 2
//! when a case is unusable (the file and field are named).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use serde::Deserialize;
use serde_json::Value;

use crate::admission::{self, COMPUTE_CONTAINER, Environment};
use crate::cli::TestArgs;
use crate::commands::{VmiSet, load_policy, read_document, request_from_document};
use crate::sizing::Quantity;

/// One case file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Case {
    /// Optional description, printed with the result.
    #[serde(default)]
    pub name: Option<String>,
    /// Policy file; the built-in policy when absent.
    #[serde(default)]
    pub policy: Option<PathBuf>,
    /// Pod, RuntimeClass or a whole AdmissionReview (JSON or YAML).
    pub input: PathBuf,
    /// VirtualMachineInstance file(s) for launcher Pods.
    #[serde(default)]
    pub vmi: OneOrMany,
    /// The namespace and its labels.
    #[serde(default)]
    pub namespace: Namespace,
    /// CREATE (default) or UPDATE, for bare objects.
    #[serde(default = "default_operation")]
    pub operation: String,
    /// What must hold.
    pub expect: Expect,
}

/// A path or a list of paths.
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// None given.
    #[default]
    None,
    /// One path.
    One(PathBuf),
    /// Several paths.
    Many(Vec<PathBuf>),
}

/// `namespace:` of a case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Namespace {
    /// Name (default `default`).
    #[serde(default)]
    pub name: Option<String>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `expect:` of a case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Expect {
    /// Whether the request is admitted.
    #[serde(default)]
    pub allowed: Option<bool>,
    /// The `compute` container's resources, by value; `{}` = none.
    #[serde(default)]
    pub compute: Option<Resources>,
    /// Resources of named containers (Kata Pods), by value.
    #[serde(default)]
    pub containers: BTreeMap<String, Resources>,
    /// RuntimeClass `overhead.podFixed`, by value.
    #[serde(default)]
    pub overhead: Option<BTreeMap<String, Value>>,
    /// The whole patched object (file).
    #[serde(default)]
    pub patched: Option<PathBuf>,
    /// Substrings that must each appear in some warning.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Substring of the denial message.
    #[serde(default)]
    pub message: Option<String>,
    /// `true`: no patch at all.
    #[serde(default)]
    pub unchanged: Option<bool>,
}

/// Expected requests and limits; a missing section is not checked.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Requests by value.
    #[serde(default)]
    pub requests: Option<BTreeMap<String, Value>>,
    /// Limits by value.
    #[serde(default)]
    pub limits: Option<BTreeMap<String, Value>>,
}

fn default_operation() -> String {
    "CREATE".to_owned()
}

/// The result of one case.
#[derive(Debug)]
enum Verdict {
    Pass,
    Fail(Vec<String>),
    Unusable(String),
}

/// Runs `virt-sizer test`.
///
/// # Errors
/// DIR cannot be read, or the JUnit report cannot be written.
pub fn run(args: &TestArgs) -> anyhow::Result<ExitCode> {
    let mut files = Vec::new();
    collect_yaml(&args.dir, &mut files)
        .with_context(|| format!("reading {}", args.dir.display()))?;
    files.sort();

    let mut results: Vec<(PathBuf, Option<String>, Verdict)> = Vec::new();
    for file in files {
        let document = match read_document(&file) {
            Ok(document) => document,
            // Not every YAML file under DIR is a case; only those with
            // `expect:` are, so an unparseable one is unusable only if it
            // looks like a case.
            Err(error) => {
                if std::fs::read_to_string(&file).is_ok_and(|text| text.contains("expect:")) {
                    results.push((file, None, Verdict::Unusable(format!("{error:#}"))));
                }
                continue;
            }
        };
        if document.get("expect").is_none() {
            continue;
        }
        let case: Case = match serde_path_to_error::deserialize(document) {
            Ok(case) => case,
            Err(error) => {
                let message = format!("{}: {}", error.path(), error.inner());
                results.push((file, None, Verdict::Unusable(message)));
                continue;
            }
        };
        let name = case.name.clone();
        let verdict = match run_case(&file, &case) {
            Ok(problems) if problems.is_empty() => Verdict::Pass,
            Ok(problems) => Verdict::Fail(problems),
            Err(error) => Verdict::Unusable(format!("{error:#}")),
        };
        results.push((file, name, verdict));
    }

    let (mut passed, mut failed, mut unusable) = (0, 0, 0);
    for (file, name, verdict) in &results {
        let title = match name {
            Some(name) => format!("{} ({name})", file.display()),
            None => file.display().to_string(),
        };
        match verdict {
            Verdict::Pass => {
                passed += 1;
                println!("ok    {title}");
            }
            Verdict::Fail(problems) => {
                failed += 1;
                println!("FAIL  {title}");
                for problem in problems {
                    for line in problem.lines() {
                        println!("      {line}");
                    }
                }
            }
            Verdict::Unusable(message) => {
                unusable += 1;
                println!("ERROR {title}: {message}");
            }
        }
    }
    if let Some(junit) = &args.junit {
        std::fs::write(junit, junit_report(&results))
            .with_context(|| format!("writing {}", junit.display()))?;
    }
    println!("{passed} passed, {} failed", failed + unusable);
    Ok(if unusable > 0 {
        ExitCode::from(2)
    } else if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn collect_yaml(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_yaml(&path, files)?;
        } else if path
            .extension()
            .is_some_and(|extension| extension == "yaml" || extension == "yml")
        {
            files.push(path);
        }
    }
    Ok(())
}

/// Runs one case; `Ok(problems)` with an empty list means it passed.
fn run_case(file: &Path, case: &Case) -> anyhow::Result<Vec<String>> {
    let base = file.parent().unwrap_or(Path::new("."));
    let policy = load_policy(case.policy.as_ref().map(|path| base.join(path)).as_deref())
        .context("policy")?;
    let vmi_paths: Vec<PathBuf> = match &case.vmi {
        OneOrMany::None => Vec::new(),
        OneOrMany::One(path) => vec![base.join(path)],
        OneOrMany::Many(paths) => paths.iter().map(|path| base.join(path)).collect(),
    };
    let vmis = VmiSet::load(&vmi_paths).context("vmi")?;
    let namespace = case.namespace.name.as_deref().unwrap_or("default");
    let input = base.join(&case.input);
    let document = read_document(&input).context("input")?;
    let request = request_from_document(document, namespace, &case.operation).context("input")?;
    let vmi = admission::launcher_vmi(&request).and_then(|reference| vmis.find(&reference));
    let decision = admission::review(
        &Environment {
            policy: &policy,
            namespace_labels: &case.namespace.labels,
            quota: None,
            vmi,
            vmi_unavailable: None,
        },
        &request,
    );
    let patched = admission::patched_object(&request, &decision)
        .context("the decision's patch does not apply")?
        .unwrap_or(Value::Null);

    let expect = &case.expect;
    let mut problems = Vec::new();
    let count = |object: &Value| {
        object
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .map(Vec::len)
    };
    if let Some(object) = &request.object
        && count(object) != count(&patched)
    {
        problems.push(format!(
            "the patch changed the number of containers from {:?} to {:?}",
            count(object),
            count(&patched)
        ));
    }
    if let Some(allowed) = expect.allowed
        && decision.response.allowed != allowed
    {
        problems.push(format!(
            "allowed: expected {allowed}, got {}{}",
            decision.response.allowed,
            decision
                .error
                .as_ref()
                .map(|error| format!(" ({error})"))
                .unwrap_or_default()
        ));
    }
    if let Some(unchanged) = expect.unchanged
        && unchanged == decision.patch.is_some()
    {
        problems.push(format!(
            "unchanged: expected {unchanged}, got a patch of {} operation(s)",
            decision.patch.as_ref().map_or(0, |patch| patch.0.len())
        ));
    }
    if let Some(compute) = &expect.compute {
        let container = container_by_name(&patched, COMPUTE_CONTAINER);
        compare_resources("compute", container, compute, &mut problems)?;
    }
    for (name, resources) in &expect.containers {
        let container = container_by_name(&patched, name);
        compare_resources(
            &format!("containers.{name}"),
            container,
            resources,
            &mut problems,
        )?;
    }
    if let Some(overhead) = &expect.overhead {
        let actual = patched.pointer("/overhead/podFixed");
        compare_map("overhead.podFixed", actual, overhead, &mut problems)?;
    }
    if let Some(expected_file) = &expect.patched {
        let expected = read_document(&base.join(expected_file)).context("expect.patched")?;
        if expected != patched {
            problems.push(json_diff("patched object", &expected, &patched));
        }
    }
    for substring in &expect.warnings {
        if !decision
            .warnings
            .iter()
            .any(|warning| warning.contains(substring.as_str()))
        {
            problems.push(format!(
                "warnings: none contains {substring:?}; got {:?}",
                decision.warnings
            ));
        }
    }
    if let Some(substring) = &expect.message {
        let message = decision
            .response
            .status
            .as_ref()
            .map_or("", |status| status.message.as_str());
        if !message.contains(substring.as_str()) {
            problems.push(format!(
                "message: expected to contain {substring:?}, got {message:?}"
            ));
        }
    }
    Ok(problems)
}

fn container_by_name<'v>(object: &'v Value, name: &str) -> Option<&'v Value> {
    object
        .pointer("/spec/containers")
        .and_then(Value::as_array)?
        .iter()
        .find(|container| container.get("name").and_then(Value::as_str) == Some(name))
}

fn compare_resources(
    what: &str,
    container: Option<&Value>,
    expected: &Resources,
    problems: &mut Vec<String>,
) -> anyhow::Result<()> {
    let Some(container) = container else {
        problems.push(format!("{what}: no such container in the object"));
        return Ok(());
    };
    for (section, expected) in [
        ("requests", &expected.requests),
        ("limits", &expected.limits),
    ] {
        if let Some(expected) = expected {
            let actual = container.pointer(&format!("/resources/{section}"));
            compare_map(&format!("{what}.{section}"), actual, expected, problems)?;
        }
    }
    Ok(())
}

/// Compares a resource map by value: the same names, equal quantities.
fn compare_map(
    what: &str,
    actual: Option<&Value>,
    expected: &BTreeMap<String, Value>,
    problems: &mut Vec<String>,
) -> anyhow::Result<()> {
    let actual: BTreeMap<String, Value> = actual
        .and_then(Value::as_object)
        .map(|object| object.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let names: std::collections::BTreeSet<&String> = expected.keys().chain(actual.keys()).collect();
    for name in names {
        let expected_quantity = expected
            .get(name)
            .map(|value| quantity(value).with_context(|| format!("expect.{what}.{name}")))
            .transpose()?;
        let actual_value = actual.get(name);
        let actual_quantity = actual_value.and_then(|value| quantity(value).ok());
        if expected_quantity != actual_quantity
            || (actual_value.is_some() && actual_quantity.is_none())
        {
            problems.push(format!(
                "{what}.{name}: expected {}, got {}",
                describe(expected_quantity),
                actual_value.map_or_else(
                    || "none".to_owned(),
                    |value| match actual_quantity {
                        Some(parsed) => describe(Some(parsed)),
                        None => value.to_string(),
                    }
                ),
            ));
        }
    }
    Ok(())
}

fn quantity(value: &Value) -> anyhow::Result<Quantity> {
    Ok(crate::sizing::vmi::quantity_at(value, "value")?)
}

/// `1292Mi (1354760192)`: the canonical form and the plain value.
fn describe(quantity: Option<Quantity>) -> String {
    match quantity {
        None => "none".to_owned(),
        Some(quantity) => {
            let canonical = quantity.to_string();
            let nanos = quantity.nanos();
            let plain = if nanos % 1_000_000_000 == 0 {
                (nanos / 1_000_000_000).to_string()
            } else {
                format!("{}m", quantity.milli_value())
            };
            if plain == canonical {
                canonical
            } else {
                format!("{canonical} ({plain})")
            }
        }
    }
}

fn json_diff(what: &str, expected: &Value, actual: &Value) -> String {
    let expected = serde_json::to_string_pretty(expected).unwrap_or_default();
    let actual = serde_json::to_string_pretty(actual).unwrap_or_default();
    let diff = similar::TextDiff::from_lines(&expected, &actual);
    let mut out = format!("{what} differs (- expected, + actual):\n");
    let _ = write!(
        out,
        "{}",
        diff.unified_diff()
            .context_radius(3)
            .header("expected", "actual")
    );
    out
}

fn junit_report(results: &[(PathBuf, Option<String>, Verdict)]) -> String {
    let failures = results
        .iter()
        .filter(|(_, _, verdict)| matches!(verdict, Verdict::Fail(_)))
        .count();
    let errors = results
        .iter()
        .filter(|(_, _, verdict)| matches!(verdict, Verdict::Unusable(_)))
        .count();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuite name=\"virt-sizer\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\">",
        results.len()
    );
    for (file, name, verdict) in results {
        let case_name = name.clone().unwrap_or_else(|| file.display().to_string());
        let _ = write!(
            xml,
            "  <testcase classname=\"{}\" name=\"{}\"",
            escape(&file.display().to_string()),
            escape(&case_name)
        );
        match verdict {
            Verdict::Pass => xml.push_str("/>\n"),
            Verdict::Fail(problems) => {
                let _ = writeln!(
                    xml,
                    ">\n    <failure message=\"{}\">{}</failure>\n  </testcase>",
                    escape(
                        problems
                            .first()
                            .map_or("", String::as_str)
                            .lines()
                            .next()
                            .unwrap_or("")
                    ),
                    escape(&problems.join("\n"))
                );
            }
            Verdict::Unusable(message) => {
                let _ = writeln!(
                    xml,
                    ">\n    <error message=\"{}\"/>\n  </testcase>",
                    escape(message)
                );
            }
        }
    }
    xml.push_str("</testsuite>\n");
    xml
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 forbids most control characters, even escaped.
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}
