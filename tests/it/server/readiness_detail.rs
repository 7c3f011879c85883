//! `/readyz` says what is wrong without naming a server path: the policy
//! file, the serving pair and the VMI directory are named in the log, and
//! by file name only in the body.

use super::*;

#[tokio::test]
async fn readyz_names_no_server_path_even_in_a_failed_reload() {
    install_provider();
    // A directory name that cannot occur in the body by chance.
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("secret-layout-7f3b");
    let vmi_dir = dir.join("vmis");
    std::fs::create_dir_all(&vmi_dir).expect("mkdir");
    std::fs::copy(repo("examples/vmi-dev.yaml"), vmi_dir.join("vmi.yaml")).expect("copy");
    let setup = setup_in(&dir, &pair());
    let policy = dir.join("policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: virt-sizer.io/v1alpha1\nkind: SizingPolicy\n",
    )
    .expect("write");
    let certs = Arc::new(CertStore::from_files(&setup.cert, &setup.key, provider()).expect("pair"));
    let state = AppState::new(
        PolicyStore::from_file(&policy).expect("policy"),
        Some(certs),
        Arc::new(VmiDirectory::new(&vmi_dir).expect("dir")),
        Arc::new(StaticNamespaces::default()),
        Duration::from_secs(1),
    );
    // Both reloads fail on a missing file: their messages name it.
    std::fs::remove_file(&policy).expect("rm");
    std::fs::remove_file(&setup.cert).expect("rm");
    state.reload_policy();
    state.reload_certificate();
    let (_, ready) = crate::support::readyz_of(server::probe_app(state)).await;
    let text = ready.to_string();
    assert!(!text.contains("secret-layout-7f3b"), "{text}");
    assert_eq!(ready["policy"]["source"], "file", "{text}");
    let rejected = ready["policy"]["rejectedReload"].as_str().expect("why");
    assert!(rejected.contains("policy.yaml"), "{rejected}");
    let failed = ready["certificate"]["failedReload"].as_str().expect("why");
    assert!(failed.contains("tls.crt"), "{failed}");
    assert_eq!(ready["vmiSource"]["detail"], "directory (1 VMIs)", "{text}");
}
