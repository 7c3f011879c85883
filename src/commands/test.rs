//! `virt-sizer test DIR|FILE`: CI policy tests.
//!
//! Every `*.yaml`/`*.yml` under DIR is read. A file whose top level is a
//! mapping with a case key (`expect`, `input`, `policy`, …, or a near miss
//! of `expect`) and no `apiVersion`/`kind` is a case, and is read strictly:
//! an unknown key makes it unusable, with the closest known key. The other
//! files (the policies, Pods and VMIs the cases name) are inputs. Paths in a
//! case are relative to the case file. Each case runs the very same
//! [`admission::review`] as the server. A failure prints a diff; the last
//! line is `N passed, N failed`. Exit 0 when all pass, 1 on any failure, 2
//! when a case is unusable (the file and field are named) or there is none:
//! an empty run is never green.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use serde::Deserialize;
use serde_json::Value;

use crate::admission::{self, COMPUTE_CONTAINER, Environment};
use crate::cli::{TestArgs, TestOutput};
use crate::commands::{VmiSet, load_policy_over, request_from_document};
use crate::documents::{read_document, read_documents};
use crate::sizing::policy::{UnknownField, closest_name, struct_fields};
use crate::sizing::{Quantity, SizingError};

/// One case file. Unknown keys are collected (with a did-you-mean), not
/// skipped: see [`parse_case`].
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Case {
    /// Optional description, printed with the result and matched by `--run`.
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
    /// A KubeVirt CR (JSON or YAML) the case models: the policy's baseline,
    /// as the cluster's CR is in `serve`.
    #[serde(default)]
    pub kubevirt: Option<PathBuf>,
    /// What must hold.
    pub expect: Expect,
}

/// A path or a list of paths.
#[derive(Debug, Default, Deserialize)]
#[serde(untagged, expecting = "a path or a list of paths")]
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
#[serde(rename_all = "camelCase")]
pub struct Expect {
    /// Whether the request is admitted.
    #[serde(default)]
    pub allowed: Option<bool>,
    /// The `compute` container's resources, by value.
    #[serde(default)]
    pub compute: Option<Resources>,
    /// Resources of named containers or init containers (Kata Pods), by
    /// value.
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
    /// `true`: every resource map (compute, containers, overhead) must
    /// hold exactly the names listed, not just agree on them.
    #[serde(default)]
    pub exact: bool,
}

/// Expected requests and limits. A section left out is not checked; `{}`
/// means none; otherwise only the names listed are compared (`~` = must be
/// absent), unless `exact`.
#[derive(Debug, Default, Deserialize)]
pub struct Resources {
    /// Requests by value.
    #[serde(default)]
    pub requests: Option<BTreeMap<String, Value>>,
    /// Limits by value.
    #[serde(default)]
    pub limits: Option<BTreeMap<String, Value>>,
    /// `true`: each section listed must hold exactly these names (overrides
    /// `expect.exact`).
    #[serde(default)]
    pub exact: Option<bool>,
}

fn default_operation() -> String {
    "CREATE".to_owned()
}

/// What a YAML file turned out to be.
#[derive(Debug)]
enum Found {
    Case(Box<Case>),
    /// A case that cannot run as written; every problem found.
    Unusable(Vec<String>),
    /// An input (policy, Pod, VMI, …), not a case.
    NotACase,
}

/// The result of one case.
#[derive(Debug)]
enum Verdict {
    Pass,
    Fail(Vec<String>),
    Unusable(Vec<String>),
}

/// A case found under DIR.
struct Entry {
    file: PathBuf,
    /// Path relative to DIR (the file name for a single FILE).
    relative: String,
    found: Found,
}

/// Runs `virt-sizer test`.
///
/// # Errors
/// DIR cannot be read, holds no case (or none `--run` selects), or the
/// JUnit report cannot be written.
pub fn run(args: &TestArgs) -> anyhow::Result<ExitCode> {
    let mut entries = discover(&args.path)?;
    let n_found = entries.len();
    if let Some(pattern) = &args.run {
        entries.retain(|entry| {
            pattern.is_match(&entry.relative)
                || matches!(&entry.found, Found::Case(case)
                    if case.name.as_deref().is_some_and(|name| pattern.is_match(name)))
        });
        if entries.is_empty() {
            bail!(
                "no test case matches --run {pattern} ({n_found} found under {})",
                args.path.display()
            );
        }
    }
    let n_skipped = n_found - entries.len();

    let mut out = std::io::stdout().lock();
    let mut results: Vec<(PathBuf, Option<String>, Verdict)> = Vec::new();
    for entry in entries {
        let (name, verdict) = match entry.found {
            Found::Case(case) => {
                let verdict = match run_case(&entry.file, &case, args.kubevirt.as_deref()) {
                    Ok(problems) if problems.is_empty() => Verdict::Pass,
                    Ok(problems) => Verdict::Fail(problems),
                    Err(error) => Verdict::Unusable(vec![format!("{error:#}")]),
                };
                (case.name, verdict)
            }
            Found::Unusable(problems) => (None, Verdict::Unusable(problems)),
            Found::NotACase => continue,
        };
        match args.output {
            TestOutput::Text => print_text(&mut out, &entry.file, name.as_deref(), &verdict)?,
            TestOutput::Json => {
                let record = json_record(&entry.file, &entry.relative, name.as_deref(), &verdict);
                writeln!(out, "{}", serde_json::to_string(&record)?)?;
            }
        }
        results.push((entry.file, name, verdict));
    }

    let count = |wanted: fn(&Verdict) -> bool| results.iter().filter(|(_, _, v)| wanted(v)).count();
    let n_passed = count(|v| matches!(v, Verdict::Pass));
    let n_failed = count(|v| matches!(v, Verdict::Fail(_)));
    let n_unusable = count(|v| matches!(v, Verdict::Unusable(_)));
    if let Some(junit) = &args.junit {
        std::fs::write(junit, junit_report(&results))
            .with_context(|| format!("writing {}", junit.display()))?;
    }
    match args.output {
        TestOutput::Text => {
            if n_skipped > 0 {
                writeln!(out, "({n_skipped} not matching --run skipped)")?;
            }
            writeln!(out, "{n_passed} passed, {} failed", n_failed + n_unusable)?;
        }
        TestOutput::Json => {
            let totals = JsonLine::Totals {
                passed: n_passed,
                failed: n_failed,
                errors: n_unusable,
                skipped: n_skipped,
            };
            writeln!(out, "{}", serde_json::to_string(&totals)?)?;
        }
    }
    out.flush()?;
    Ok(if n_unusable > 0 {
        ExitCode::from(2)
    } else if n_failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The cases (and unusable would-be cases) at `root`, a directory or one
/// file, in path order.
fn discover(root: &Path) -> anyhow::Result<Vec<Entry>> {
    let is_dir = std::fs::metadata(root)
        .with_context(|| format!("reading {}", root.display()))?
        .is_dir();
    if !is_dir {
        let found = examine(root);
        if matches!(found, Found::NotACase) {
            bail!(
                "{} is not a test case (a case is a YAML file with a top-level `expect:` and no `kind:`)",
                root.display()
            );
        }
        let relative = root.file_name().map_or_else(
            || root.display().to_string(),
            |name| name.to_string_lossy().into_owned(),
        );
        return Ok(vec![Entry {
            file: root.to_owned(),
            relative,
            found,
        }]);
    }
    let mut files = Vec::new();
    collect_yaml(root, &mut files).with_context(|| format!("reading {}", root.display()))?;
    files.sort();
    let mut entries = Vec::new();
    for file in files {
        let found = examine(&file);
        if matches!(found, Found::NotACase) {
            continue;
        }
        let relative = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .display()
            .to_string();
        entries.push(Entry {
            file,
            relative,
            found,
        });
    }
    if entries.is_empty() {
        bail!(
            "no test cases found under {} (a case is a YAML file with a top-level `expect:`)",
            root.display()
        );
    }
    Ok(entries)
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

/// Reads one YAML file and says whether it is a case.
fn examine(file: &Path) -> Found {
    let mut documents = match read_documents(file) {
        Ok(documents) => documents,
        // Broken YAML is unusable only if it looks like a case: the inputs
        // under DIR are not ours to judge.
        Err(error) => {
            let looks_like_case = std::fs::read_to_string(file)
                .is_ok_and(|text| text.lines().any(|line| line.starts_with("expect")));
            return if looks_like_case {
                Found::Unusable(vec![format!("{error:#}")])
            } else {
                Found::NotACase
            };
        }
    };
    if !documents.iter().any(is_case) {
        return Found::NotACase;
    }
    if documents.len() > 1 {
        return Found::Unusable(vec![format!(
            "a case file holds one YAML document, found {}",
            documents.len()
        )]);
    }
    match parse_case(documents.remove(0)) {
        Ok(case) => Found::Case(Box::new(case)),
        Err(problems) => Found::Unusable(problems),
    }
}

/// A mapping with no `apiVersion`/`kind` (those are inputs) and a case key,
/// or a near miss of `expect` (so `expects:` alone is reported, not skipped).
fn is_case(document: &Value) -> bool {
    let Some(object) = document.as_object() else {
        return false;
    };
    if object.contains_key("apiVersion") || object.contains_key("kind") {
        return false;
    }
    let keys = struct_fields::<Case>();
    object
        .keys()
        .any(|key| keys.contains(&key.as_str()) || closest_name(key, &["expect"]).is_some())
}

/// Deserialises a case, collecting every unknown key (with the closest
/// known one) and the first type error.
fn parse_case(document: Value) -> Result<Case, Vec<String>> {
    let mut problems = Vec::new();
    let mut on_unknown = |path: serde_ignored::Path<'_>| {
        let field = UnknownField::at(&path, case_fields);
        let hint = match field.suggestion {
            Some(name) => format!("did you mean `{name}`?"),
            None => format!("expected one of `{}`", field.known.join("`, `")),
        };
        problems.push(format!(
            "{}: unknown key `{}` ({hint})",
            field.path, field.name
        ));
    };
    let parsed: Result<Case, _> = serde_path_to_error::deserialize(
        serde_ignored::Deserializer::new(document, &mut on_unknown),
    );
    match parsed {
        Ok(case) if problems.is_empty() => Ok(case),
        Ok(_) => Err(problems),
        Err(error) => {
            let path = error.path().to_string();
            problems.push(if path == "." {
                error.inner().to_string()
            } else {
                format!("{path}: {}", error.inner())
            });
            Err(problems)
        }
    }
}

/// The keys a case accepts under a parent (see [`UnknownField::at`]).
fn case_fields(parent: &[&str]) -> &'static [&'static str] {
    match parent {
        [] => struct_fields::<Case>(),
        ["expect"] => struct_fields::<Expect>(),
        ["expect", "compute"] | ["expect", "containers", _] => struct_fields::<Resources>(),
        ["namespace"] => struct_fields::<Namespace>(),
        _ => &[],
    }
}

fn print_text(
    out: &mut impl std::io::Write,
    file: &Path,
    name: Option<&str>,
    verdict: &Verdict,
) -> std::io::Result<()> {
    let title = match name {
        Some(name) => format!("{} ({name})", file.display()),
        None => file.display().to_string(),
    };
    let (label, problems) = match verdict {
        Verdict::Pass => return writeln!(out, "ok    {title}"),
        Verdict::Fail(problems) => ("FAIL ", problems),
        Verdict::Unusable(problems) => ("ERROR", problems),
    };
    writeln!(out, "{label} {title}")?;
    for problem in problems {
        for line in problem.lines() {
            writeln!(out, "      {line}")?;
        }
    }
    Ok(())
}

/// One line of `--format json`, its keys in the documented order
/// (`docs/ci-cases.md`).
#[derive(serde::Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum JsonLine<'a> {
    /// A case's verdict.
    Case {
        name: &'a str,
        file: String,
        passed: bool,
        outcome: &'static str,
        failures: &'a [String],
        errors: &'a [String],
    },
    /// The run's totals, last.
    Totals {
        passed: usize,
        failed: usize,
        errors: usize,
        skipped: usize,
    },
}

fn json_record<'a>(
    file: &Path,
    relative: &'a str,
    name: Option<&'a str>,
    verdict: &'a Verdict,
) -> JsonLine<'a> {
    let (outcome, failures, errors): (&str, &[String], &[String]) = match verdict {
        Verdict::Pass => ("pass", &[], &[]),
        Verdict::Fail(problems) => ("fail", problems, &[]),
        Verdict::Unusable(problems) => ("error", &[], problems),
    };
    JsonLine::Case {
        name: name.unwrap_or(relative),
        file: file.display().to_string(),
        passed: matches!(verdict, Verdict::Pass),
        outcome,
        failures,
        errors,
    }
}

/// Runs one case; `Ok(problems)` with an empty list means it passed.
/// `kubevirt` is `--kubevirt`, used when the case names none.
fn run_case(file: &Path, case: &Case, kubevirt: Option<&Path>) -> anyhow::Result<Vec<String>> {
    let base = file.parent().unwrap_or(Path::new("."));
    let case_kubevirt = case.kubevirt.as_ref().map(|path| base.join(path));
    let policy = load_policy_over(
        case.policy.as_ref().map(|path| base.join(path)).as_deref(),
        case_kubevirt.as_deref().or(kubevirt),
    )
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
    let vmi = vmis.lookup(&request);
    let decision = admission::review(
        &Environment {
            policy: &policy,
            namespace_labels: &case.namespace.labels,
            vmi: vmi.as_lookup(),
        },
        &request,
    );
    let patched = admission::patched_object(&request, &decision)
        .context("the decision's patch does not apply")?
        .unwrap_or(Value::Null);

    let mut problems = check(case, base, &request, &decision, &patched)?;
    if !problems.is_empty()
        && let Some(SizingError::VmiNotFound { namespace, name }) = decision.error()
    {
        problems.push(format!(
            "hint: the Pod belongs to VirtualMachineInstance {namespace}/{name}; name its file in `vmi:`"
        ));
    }
    Ok(problems)
}

/// Compares the decision with `expect:`.
fn check(
    case: &Case,
    base: &Path,
    request: &admission::AdmissionRequest,
    decision: &admission::Decision,
    patched: &Value,
) -> anyhow::Result<Vec<String>> {
    let expect = &case.expect;
    let mut problems = Vec::new();
    let count = |object: &Value| {
        object
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .map(Vec::len)
    };
    if let Some(object) = &request.object
        && count(object) != count(patched)
    {
        problems.push(format!(
            "the patch changed the number of containers from {:?} to {:?}",
            count(object),
            count(patched)
        ));
    }
    if let Some(allowed) = expect.allowed
        && decision.response().allowed != allowed
    {
        problems.push(format!(
            "allowed: expected {allowed}, got {}{}",
            decision.response().allowed,
            decision
                .error()
                .map(|error| format!(" ({error})"))
                .unwrap_or_default()
        ));
    }
    if let Some(unchanged) = expect.unchanged
        && unchanged == decision.patch().is_some()
    {
        problems.push(format!(
            "unchanged: expected {unchanged}, got a patch of {} operation(s)",
            decision.patch().map_or(0, |patch| patch.0.len())
        ));
    }
    let containers = expect
        .compute
        .iter()
        .map(|resources| (COMPUTE_CONTAINER, "compute".to_owned(), resources))
        .chain(
            expect
                .containers
                .iter()
                .map(|(name, resources)| (name.as_str(), format!("containers.{name}"), resources)),
        );
    for (name, what, resources) in containers {
        let exact = resources.exact.unwrap_or(expect.exact);
        let Some(container) = container_by_name(patched, name) else {
            problems.push(format!("{what}: no such container in the object"));
            continue;
        };
        for (section, expected) in [
            ("requests", &resources.requests),
            ("limits", &resources.limits),
        ] {
            if let Some(expected) = expected {
                let actual = container.pointer(&format!("/resources/{section}"));
                compare_map(
                    &format!("{what}.{section}"),
                    actual,
                    expected,
                    exact,
                    &mut problems,
                )?;
            }
        }
    }
    if let Some(overhead) = &expect.overhead {
        let actual = patched.pointer("/overhead/podFixed");
        compare_map(
            "overhead.podFixed",
            actual,
            overhead,
            expect.exact,
            &mut problems,
        )?;
    }
    if let Some(expected_file) = &expect.patched {
        let expected = read_document(&base.join(expected_file)).context("expect.patched")?;
        if expected != *patched {
            problems.push(json_diff("patched object", &expected, patched));
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
        let response = decision.response();
        let message = response
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

/// The container named `name` in `spec.containers`, else in
/// `spec.initContainers`.
fn container_by_name<'v>(object: &'v Value, name: &str) -> Option<&'v Value> {
    ["/spec/containers", "/spec/initContainers"]
        .into_iter()
        .filter_map(|list| object.pointer(list).and_then(Value::as_array))
        .flatten()
        .find(|container| container.get("name").and_then(Value::as_str) == Some(name))
}

/// Compares a resource map by value (`1Gi` = `1073741824`). The names
/// compared: those listed (`~` = must be absent); every name on either side
/// when `exact` or when `expected` is `{}` (= none).
fn compare_map(
    what: &str,
    actual: Option<&Value>,
    expected: &BTreeMap<String, Value>,
    exact: bool,
    problems: &mut Vec<String>,
) -> anyhow::Result<()> {
    let empty = serde_json::Map::new();
    let actual = actual.and_then(Value::as_object).unwrap_or(&empty);
    let names: BTreeSet<&String> = if exact || expected.is_empty() {
        expected.keys().chain(actual.keys()).collect()
    } else {
        expected.keys().collect()
    };
    for name in names {
        let expected_quantity = expected
            .get(name)
            .filter(|value| !value.is_null())
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
            Verdict::Unusable(problems) => {
                let _ = writeln!(
                    xml,
                    ">\n    <error message=\"{}\"/>\n  </testcase>",
                    escape(&problems.join("\n"))
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

#[cfg(test)]
#[path = "test/tests.rs"]
mod tests;
