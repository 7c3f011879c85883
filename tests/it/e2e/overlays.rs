//! Every kustomize directory under `manifests/` (the root, the base and each
//! overlay) applies with `kubectl apply --dry-run=server -k`: the apiserver
//! validates every object as it would store it (schemas, immutable and
//! required fields, RBAC escalation checks, webhook configuration rules).
//! The namespace the objects live in is made first (a dry run does not
//! create it), the cert-manager kinds exist as minimal CRDs, and
//! overlays/certs-script gets certs/out from certs/gen-certs.sh in a copy of
//! the tree. Each add-on component under `manifests/components` is applied
//! on top of overlays/cert-manager (its CRDs, minimal, are in the fixtures
//! too).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::api;
use super::control_plane;
use crate::support::repo;

/// `kubectl apply --dry-run=server -k dir`, retried briefly while a
/// webhook configuration of an earlier test is still being unregistered.
async fn dry_run_apply(session: &control_plane::Session, dir: &Path) -> Result<String, String> {
    let mut last = String::new();
    for _ in 0..10 {
        let output = session.plane.kubectl(&[
            "apply",
            "--dry-run=server",
            "-k",
            dir.to_str().expect("utf-8 path"),
        ]);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        last = String::from_utf8_lossy(&output.stderr).into_owned();
        if output.status.success() {
            return Ok(stdout);
        }
        if !last.contains("failed calling webhook") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(last)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_overlay_applies_with_a_server_side_dry_run() {
    let Some(session) = control_plane::session().await else {
        return;
    };
    api::namespace(&session.client, "virt-sizer", &[]).await;

    // A copy of the tree, with certs/out made by the script, so that
    // overlays/certs-script builds without touching the repository.
    let temp = tempfile::tempdir().expect("tempdir");
    let manifests = temp.path().join("manifests");
    copy_tree(&repo("manifests"), &manifests);
    let script = std::process::Command::new("bash")
        .arg(repo("certs/gen-certs.sh"))
        .arg("--out")
        .arg(temp.path().join("certs/out"))
        .output()
        .expect("bash runs");
    assert!(
        script.status.success(),
        "certs/gen-certs.sh: {}",
        String::from_utf8_lossy(&script.stderr)
    );

    let mut directories: Vec<PathBuf> = vec![manifests.clone(), manifests.join("base")];
    let mut overlays: Vec<PathBuf> = std::fs::read_dir(manifests.join("overlays"))
        .expect("manifests/overlays")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.join("kustomization.yaml").is_file())
        .collect();
    overlays.sort();
    assert!(overlays.len() >= 3, "{overlays:?}");
    directories.extend(overlays);
    // Each component, added to overlays/cert-manager as an operator adds it.
    for component in crate::manifests::add_on_components(&manifests) {
        let dir = manifests.join("overlays").join(format!("with-{component}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(
            dir.join("kustomization.yaml"),
            format!("resources: [../cert-manager]\ncomponents: [../../components/{component}]\n"),
        )
        .expect("write");
        directories.push(dir);
    }

    let mut failures = Vec::new();
    for dir in &directories {
        let name = dir
            .strip_prefix(temp.path())
            .expect("inside the copy")
            .display()
            .to_string();
        match dry_run_apply(&session, dir).await {
            Ok(stdout) => {
                assert!(
                    stdout.contains(
                        "mutatingwebhookconfiguration.admissionregistration.k8s.io/virt-sizer"
                    ),
                    "{name}: {stdout}"
                );
                assert!(
                    stdout.contains("deployment.apps/virt-sizer"),
                    "{name}: {stdout}"
                );
            }
            Err(stderr) => failures.push(format!("{name}: {stderr}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
