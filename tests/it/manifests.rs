//! The deployment artefacts: `manifests/` (base and overlays), `certs/` and
//! the `Dockerfile`.
//!
//! Every Kubernetes document under `manifests/` must decode strictly into the
//! type its `apiVersion`/`kind` name (k8s-openapi's, or a small one in
//! [`kinds`] for cert-manager, the Prometheus Operator and kustomize), with
//! no field its type does not have: a typo such as `readinessprobe` is
//! silently dropped by the apiserver, so it is caught here. And the rules
//! that make the webhook safe must hold: what the webhook intercepts and how
//! it fails, how the Deployment is hardened, what RBAC allows, and that the
//! shipped policy is valid.
//!
//! `manifests/install.yaml` (the default install in one file) is held to
//! the same rules, and with `kubectl` (the envtest assets', or the PATH's)
//! the base and every overlay are rendered (`kubectl kustomize`) and held to
//! them too, and `install.yaml` must be what `kubectl kustomize manifests`
//! renders.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use clap::Parser as _;
use serde_json::Value;
use virt_sizer::cli::{Cli, Command as Verb};
use virt_sizer::documents::parse_documents;
use virt_sizer::sizing::policy::ValidPolicy;

use crate::support::IGNORE_LABEL;

mod files;
mod install;
mod kinds;
pub(crate) mod metrics;
mod namespaces;
mod rendered;
mod rules;
mod shipped_policy;

use rules::{
    CaBundle, Expect, check_rules, check_type, excludes_namespaces, rule_problems,
    selects_only_namespace,
};

// === What the manifests promise ===

const NAMESPACE: &str = "virt-sizer";
const SERVICE: &str = "virt-sizer";
const WEBHOOK_CONFIGURATION: &str = "virt-sizer";
const TLS_SECRET: &str = "virt-sizer-tls";
/// The Secret of the self-managed certificates.
const CERTIFICATE_SECRET: &str = "virt-sizer-certificates";
/// The Role that lets the server get, update and create that Secret.
const CERTIFICATES_ROLE: &str = "virt-sizer-certificates";
/// The ClusterRole that lets the server inject its CA into its webhook
/// configurations.
const WEBHOOK_CONFIGURATIONS_ROLE: &str = "virt-sizer-webhook-configurations";
/// The component that switches an overlay to mounted certificates.
const MOUNTED_CERTIFICATES: &str = "mounted-certificates";
const POLICY_CONFIGMAP: &str = "virt-sizer-policy";
const POLICY_WEBHOOK_CONFIGURATION: &str = "virt-sizer-policy";
const IMAGE_REPOSITORY: &str = "ghcr.io/virt-sizer/virt-sizer";
const UID: u64 = 65532;
const HTTPS_PORT: u64 = 8443;
const PROBE_PORT: u64 = 8081;
const LAUNCHER_WEBHOOK: &str = "launcher-pods.virt-sizer.io";
const KATA_WEBHOOK: &str = "kata-pods.virt-sizer.io";
const RUNTIMECLASS_WEBHOOK: &str = "runtimeclasses.virt-sizer.io";
const KATA_CONDITION: &str =
    "has(object.spec.runtimeClassName) && object.spec.runtimeClassName.startsWith('kata')";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn manifests_dir() -> PathBuf {
    repo().join("manifests")
}

/// The default install in one file.
fn install_yaml() -> PathBuf {
    manifests_dir().join("install.yaml")
}

/// The components an operator may add to an overlay (monitoring, a
/// NetworkPolicy), sorted: every directory under `components/` but
/// [`MOUNTED_CERTIFICATES`], which is part of the overlays that use it.
pub(crate) fn add_on_components(manifests: &Path) -> Vec<String> {
    let mut components: Vec<String> = std::fs::read_dir(manifests.join("components"))
        .expect("manifests/components")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name != MOUNTED_CERTIFICATES)
        .collect();
    components.sort();
    components
}

// === Reading ===

/// One YAML document and where it came from.
#[derive(Debug, Clone)]
struct Doc {
    origin: String,
    value: Value,
}

impl Doc {
    fn kind(&self) -> &str {
        str_at(&self.value, "/kind").unwrap_or_default()
    }
    fn name(&self) -> &str {
        str_at(&self.value, "/metadata/name").unwrap_or_default()
    }
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

fn read_docs(path: &Path) -> Vec<Doc> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    parse_text(&text, &path.display().to_string())
}

fn parse_text(text: &str, origin: &str) -> Vec<Doc> {
    parse_documents(text)
        .unwrap_or_else(|error| panic!("{origin}: {error:#}"))
        .into_iter()
        .enumerate()
        .map(|(index, value)| Doc {
            origin: format!("{origin}#{index}"),
            value,
        })
        .collect()
}

/// Every `*.yaml` under `dir`, recursively, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .is_some_and(|extension| extension == "yaml" || extension == "yml")
            {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn is_kustomization(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|name| name == "kustomization.yaml" || name == "kustomization.yml")
}

/// Files that kustomization.yaml files use as patches: partial objects.
fn patch_files() -> BTreeSet<PathBuf> {
    let mut patches = BTreeSet::new();
    for file in yaml_files(&manifests_dir())
        .into_iter()
        .filter(|f| is_kustomization(f))
    {
        let dir = file.parent().expect("in a directory");
        for doc in read_docs(&file) {
            for patch in list(doc.value.get("patches")) {
                if let Some(path) = patch.get("path").and_then(Value::as_str) {
                    patches.insert(normalise(&dir.join(path)));
                }
            }
            for path in list(doc.value.get("patchesStrategicMerge")) {
                if let Some(path) = path.as_str() {
                    patches.insert(normalise(&dir.join(path)));
                }
            }
        }
    }
    patches
}

fn normalise(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_owned())
}

/// Every complete object under manifests/ (no kustomization, no patch).
fn manifest_docs() -> Vec<Doc> {
    let patches = patch_files();
    yaml_files(&manifests_dir())
        .into_iter()
        .filter(|file| !is_kustomization(file) && !patches.contains(&normalise(file)))
        .flat_map(|file| read_docs(&file))
        .collect()
}

/// The complete objects of the base (what `kubectl kustomize manifests`
/// renders), read straight from the files.
fn base_docs() -> Vec<Doc> {
    let base = manifests_dir().join("base");
    let kustomization = read_docs(&base.join("kustomization.yaml"));
    list(kustomization[0].value.get("resources"))
        .iter()
        .filter_map(Value::as_str)
        .flat_map(|resource| read_docs(&base.join(resource)))
        .collect()
}

fn list(value: Option<&Value>) -> &[Value] {
    value.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn strings(value: Option<&Value>) -> Vec<&str> {
    list(value).iter().filter_map(Value::as_str).collect()
}

fn one<'a>(docs: &'a [Doc], kind: &str, name: &str) -> &'a Doc {
    let found: Vec<&Doc> = docs
        .iter()
        .filter(|doc| doc.kind() == kind && doc.name() == name)
        .collect();
    assert_eq!(found.len(), 1, "exactly one {kind} {name}, found {found:?}");
    found[0]
}

/// Whether a label selector (matchLabels only) selects `labels`.
fn selects(selector: Option<&Value>, labels: &Value) -> bool {
    let Some(match_labels) = selector
        .and_then(|selector| selector.get("matchLabels"))
        .and_then(Value::as_object)
    else {
        return false;
    };
    !match_labels.is_empty()
        && match_labels
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
}

// === Problems are collected, then reported together ===

#[derive(Debug, Default)]
struct Check {
    problems: Vec<String>,
}

impl Check {
    fn fail(&mut self, at: &str, message: impl std::fmt::Display) {
        self.problems.push(format!("{at}: {message}"));
    }

    fn expect(&mut self, ok: bool, at: &str, message: impl std::fmt::Display) {
        if !ok {
            self.fail(at, message);
        }
    }

    fn finish(self, what: &str) {
        assert!(
            self.problems.is_empty(),
            "{what}: {} problem(s):\n  {}",
            self.problems.len(),
            self.problems.join("\n  ")
        );
    }
}

// === Tools: kubectl, bash and openssl, when installed ===

fn have(program: &str, version_args: &[&str]) -> bool {
    Command::new(program)
        .args(version_args)
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Runs certs/gen-certs.sh into `out`; returns what it printed (the caBundle).
fn gen_certs(out: &Path, extra: &[&str]) -> String {
    let output = Command::new("bash")
        .arg(repo().join("certs/gen-certs.sh"))
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .expect("bash runs");
    assert!(
        output.status.success(),
        "gen-certs.sh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// `kubectl`: `TEST_ASSET_KUBECTL`, else the one in `KUBEBUILDER_ASSETS`,
/// else the one `.ci/run` extracts into `target/envtest`, else the `PATH`'s.
fn kubectl() -> PathBuf {
    let candidates = [
        std::env::var_os("TEST_ASSET_KUBECTL").map(PathBuf::from),
        std::env::var_os("KUBEBUILDER_ASSETS").map(|dir| PathBuf::from(dir).join("kubectl")),
        Some(repo().join("target/envtest/kubectl")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from("kubectl"))
}

fn have_kubectl() -> bool {
    Command::new(kubectl())
        .args(["version", "--client"])
        .output()
        .is_ok_and(|output| output.status.success())
}

fn kustomize(dir: &Path) -> Vec<Doc> {
    let output = Command::new(kubectl())
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl runs");
    assert!(
        output.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("utf-8");
    parse_text(&text, &format!("kubectl kustomize {}", dir.display()))
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("readable") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}
