//! Tests: the files as written.

use super::*;

#[test]
fn every_manifest_is_a_well_formed_object_of_its_kind() {
    let docs = manifest_docs();
    assert!(
        docs.len() >= 14,
        "expected the base and overlay objects, found {}",
        docs.len()
    );
    let mut check = Check::default();
    for doc in &docs {
        check_type(&mut check, doc);
    }
    check.finish("manifests/");
}

/// A Deployment that decodes cleanly when `KEY` is `readinessProbe`.
const DEPLOYMENT_WITH_A_PROBE: &str = "
apiVersion: apps/v1
kind: Deployment
metadata: {name: virt-sizer, namespace: virt-sizer}
spec:
  replicas: 2
  selector: {matchLabels: {app: virt-sizer}}
  template:
    metadata: {labels: {app: virt-sizer}}
    spec:
      containers:
        - name: virt-sizer
          image: ghcr.io/virt-sizer/virt-sizer:0.1.0
          KEY: {httpGet: {path: /readyz, port: 8081}}
";

/// A Deployment that decodes cleanly when `KEY` is a number.
const DEPLOYMENT_WITH_REPLICAS: &str = "
apiVersion: apps/v1
kind: Deployment
metadata: {name: virt-sizer, namespace: virt-sizer}
spec:
  replicas: KEY
  selector: {matchLabels: {app: virt-sizer}}
  template: {spec: {containers: [{name: virt-sizer, image: virt-sizer}]}}
";

/// A cert-manager Certificate that decodes cleanly when `KEY` is `dnsNames`.
const CERTIFICATE: &str = "
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: virt-sizer-serving, namespace: virt-sizer}
spec:
  secretName: virt-sizer-tls
  KEY: [virt-sizer.virt-sizer.svc]
  issuerRef: {name: virt-sizer-ca, kind: Issuer}
";

/// What [`check_type`] finds wrong with `template` once `KEY` is `key`.
fn type_problems(template: &str, key: &str) -> Vec<String> {
    let docs = parse_text(&template.replace("KEY", key), "inline");
    let mut check = Check::default();
    check_type(&mut check, &docs[0]);
    check.problems
}

/// The strict decode catches what the apiserver would drop or refuse, and
/// names where: `right` passes, `wrong` fails with `expected` in a problem.
#[rstest::rstest]
#[case::misspelled_field_of_a_k8s_openapi_kind(
    DEPLOYMENT_WITH_A_PROBE,
    "readinessProbe",
    "readinessprobe",
    "unknown field spec.template.spec.containers[0].readinessprobe"
)]
#[case::wrong_type_of_a_k8s_openapi_kind(
    DEPLOYMENT_WITH_REPLICAS,
    "2",
    "two",
    "spec.replicas: invalid type: string \"two\""
)]
#[case::misspelled_field_of_a_cert_manager_kind(
    CERTIFICATE,
    "dnsNames",
    "dnsName",
    "unknown field spec.dnsName"
)]
fn a_manifest_mistake_is_caught_with_its_path(
    #[case] template: &str,
    #[case] right: &str,
    #[case] wrong: &str,
    #[case] expected: &str,
) {
    assert_eq!(type_problems(template, right), Vec::<String>::new());
    let problems = type_problems(template, wrong);
    assert!(
        problems.iter().any(|problem| problem.contains(expected)),
        "{expected:?} not in {problems:#?}"
    );
}

#[test]
fn a_misspelled_kustomization_field_is_caught_with_its_path() {
    let decode = |key: &str| {
        let text = format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n{key}: [base]\n"
        );
        kinds::decode_strict::<kinds::Kustomization>(&parse_text(&text, "inline")[0].value)
    };
    assert_eq!(
        decode("resources").map(|kustomization| kustomization.resources),
        Ok(vec!["base".to_owned()])
    );
    assert_eq!(
        decode("resource").map(|kustomization| kustomization.resources),
        Err(vec!["unknown field resource".to_owned()])
    );
}

#[test]
fn base_satisfies_every_rule() {
    check_rules(
        &base_docs(),
        &Expect {
            failure_policy: "Ignore",
            ca_bundle: CaBundle::SelfManaged,
        },
        "manifests/base",
    );
}

#[test]
fn every_kustomization_names_files_that_exist_and_base_lists_every_file() {
    let mut check = Check::default();
    for file in yaml_files(&manifests_dir())
        .into_iter()
        .filter(|f| is_kustomization(f))
    {
        let dir = file.parent().expect("in a directory");
        let at = file.display().to_string();
        let docs = read_docs(&file);
        check.expect(docs.len() == 1, &at, "one document");
        let kustomization = match kinds::decode_strict::<kinds::Kustomization>(&docs[0].value) {
            Ok(kustomization) => kustomization,
            Err(problems) => {
                for problem in problems {
                    check.fail(&at, problem);
                }
                continue;
            }
        };
        // A directory under components/ is a kustomize Component (added to
        // an overlay with `components:`); everything else a Kustomization.
        let is_component = dir.strip_prefix(manifests_dir().join("components")).is_ok();
        let (api_version, kind) = if is_component {
            ("kustomize.config.k8s.io/v1alpha1", "Component")
        } else {
            ("kustomize.config.k8s.io/v1beta1", "Kustomization")
        };
        check.expect(
            kustomization.api_version == api_version && kustomization.kind == kind,
            &at,
            format!("a {api_version} {kind}"),
        );
        let mut referenced: Vec<&str> = kustomization
            .resources
            .iter()
            .chain(&kustomization.components)
            .map(String::as_str)
            .collect();
        referenced.extend(
            kustomization
                .patches
                .iter()
                .filter_map(|patch| patch.path.as_deref()),
        );
        for generator in &kustomization.config_map_generator {
            referenced.extend(
                generator
                    .files
                    .iter()
                    .map(|file| file.split_once('=').map_or(file.as_str(), |(_, path)| path)),
            );
        }
        for path in referenced {
            // certs/out is written by certs/gen-certs.sh and git-ignored.
            let generated = path.ends_with("certs/out");
            check.expect(
                generated || dir.join(path).exists(),
                &at,
                format!("{path} does not exist"),
            );
        }
        for (deprecated, present) in [
            ("bases", kustomization.bases.is_some()),
            (
                "patchesStrategicMerge",
                kustomization.patches_strategic_merge.is_some(),
            ),
            ("patchesJson6902", kustomization.patches_json6902.is_some()),
            ("commonLabels", kustomization.common_labels.is_some()),
            ("vars", kustomization.vars.is_some()),
        ] {
            check.expect(!present, &at, format!("deprecated field {deprecated}"));
        }
    }
    let base = manifests_dir().join("base");
    let listed: BTreeSet<String> = strings(
        read_docs(&base.join("kustomization.yaml"))[0]
            .value
            .get("resources"),
    )
    .into_iter()
    .map(str::to_owned)
    .collect();
    for file in yaml_files(&base)
        .into_iter()
        .filter(|f| !is_kustomization(f))
    {
        let name = file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        check.expect(
            listed.contains(&name),
            &base.display().to_string(),
            format!("{name} is not in resources"),
        );
    }
    check.finish("kustomizations");
}

#[test]
fn cert_manager_overlay_issues_the_secret_the_deployment_mounts() {
    let dir = manifests_dir().join("overlays/cert-manager");
    let docs: Vec<Doc> = read_docs(&dir.join("certificates.yaml"));
    let serving = one(&docs, "Certificate", "virt-sizer-serving");
    assert_eq!(str_at(&serving.value, "/spec/secretName"), Some(TLS_SECRET));
    assert_eq!(
        strings(serving.value.pointer("/spec/dnsNames")),
        [
            format!("{SERVICE}.{NAMESPACE}.svc"),
            format!("{SERVICE}.{NAMESPACE}.svc.cluster.local")
        ]
    );
    assert!(
        strings(serving.value.pointer("/spec/usages")).contains(&"server auth"),
        "{serving:?}"
    );
    let ca_issuer_name = str_at(&serving.value, "/spec/issuerRef/name").expect("issuerRef");
    let ca_issuer = one(&docs, "Issuer", ca_issuer_name);
    let ca_secret = str_at(&ca_issuer.value, "/spec/ca/secretName").expect("a CA issuer");
    let ca = docs
        .iter()
        .find(|doc| {
            doc.kind() == "Certificate" && str_at(&doc.value, "/spec/secretName") == Some(ca_secret)
        })
        .expect("a Certificate makes the CA secret");
    assert_eq!(ca.value.pointer("/spec/isCA"), Some(&Value::Bool(true)));
    let root = one(
        &docs,
        "Issuer",
        str_at(&ca.value, "/spec/issuerRef/name").expect("issuerRef"),
    );
    assert!(root.value.pointer("/spec/selfSigned").is_some(), "{root:?}");

    let patch = read_docs(&dir.join("webhook-inject-ca.yaml"));
    assert_eq!(
        str_at(
            &patch[0].value,
            "/metadata/annotations/cert-manager.io~1inject-ca-from"
        ),
        Some(format!("{NAMESPACE}/virt-sizer-serving").as_str())
    );
    // The overlay mounts that Secret instead of the self-managed one.
    let kustomization = read_docs(&dir.join("kustomization.yaml"));
    assert!(
        strings(kustomization[0].value.get("components"))
            .contains(&format!("../../components/{MOUNTED_CERTIFICATES}").as_str()),
        "{:?}",
        kustomization[0].value
    );
}

/// No base webhook sets a caBundle: the server (self-managed), cert-manager's
/// injector or the certs-script overlay owns the field, and a later
/// `kubectl apply` of the manifests never erases what was injected.
#[test]
fn no_webhook_of_the_base_sets_a_ca_bundle() {
    let base = base_docs();
    for (kind, name) in [
        ("MutatingWebhookConfiguration", WEBHOOK_CONFIGURATION),
        (
            "ValidatingWebhookConfiguration",
            POLICY_WEBHOOK_CONFIGURATION,
        ),
    ] {
        let configuration = one(&base, kind, name);
        let webhooks = list(configuration.value.get("webhooks"));
        assert!(!webhooks.is_empty(), "{kind} {name}");
        for webhook in webhooks {
            assert_eq!(
                webhook.pointer("/clientConfig/caBundle"),
                None,
                "{kind} {name}: {webhook}"
            );
        }
    }
}

#[test]
fn fail_closed_overlay_sets_fail_on_every_webhook_of_the_base() {
    let dir = manifests_dir().join("overlays/fail-closed");
    let patch = read_docs(&dir.join("failure-policy-fail.yaml"));
    let patched: BTreeMap<&str, &str> = list(patch[0].value.get("webhooks"))
        .iter()
        .map(|webhook| {
            (
                str_at(webhook, "/name").unwrap_or_default(),
                str_at(webhook, "/failurePolicy").unwrap_or_default(),
            )
        })
        .collect();
    let base = base_docs();
    let configuration = one(&base, "MutatingWebhookConfiguration", WEBHOOK_CONFIGURATION);
    let names: Vec<&str> = list(configuration.value.get("webhooks"))
        .iter()
        .filter_map(|webhook| str_at(webhook, "/name"))
        .collect();
    assert_eq!(names.len(), 3);
    for name in names {
        assert_eq!(patched.get(name), Some(&"Fail"), "{name} in {patched:?}");
    }
    assert_eq!(patched.len(), 3, "{patched:?}");
}

#[test]
fn certs_script_overlay_takes_the_ca_bundle_from_the_generated_secret() {
    let dir = manifests_dir().join("overlays/certs-script");
    let kustomization = &read_docs(&dir.join("kustomization.yaml"))[0].value;
    assert!(
        strings(kustomization.get("resources")).contains(&"../../../certs/out"),
        "{kustomization}"
    );
    let replacement = &list(kustomization.get("replacements"))[0];
    assert_eq!(str_at(replacement, "/source/kind"), Some("Secret"));
    assert_eq!(str_at(replacement, "/source/name"), Some(TLS_SECRET));
    assert_eq!(
        str_at(replacement, "/source/fieldPath"),
        Some("data.[ca.crt]")
    );
    let target = &list(replacement.get("targets"))[0];
    assert_eq!(
        str_at(target, "/select/kind"),
        Some("MutatingWebhookConfiguration")
    );
    assert_eq!(
        strings(target.get("fieldPaths")),
        ["webhooks.*.clientConfig.caBundle"]
    );
    // The base has no caBundle: the replacement creates it.
    assert_eq!(
        target.pointer("/options/create"),
        Some(&Value::Bool(true)),
        "{target}"
    );
}

#[test]
fn dockerfile_matches_the_deployment() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let lines: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .collect();
    let has = |wanted: &str| lines.contains(&wanted);
    assert!(
        lines.iter().any(|line| {
            line.starts_with("FROM --platform=$BUILDPLATFORM rust:")
                && line.ends_with(" AS builder")
        }),
        "a builder stage on the build machine's architecture (it cross-compiles)"
    );
    // linux/amd64 and linux/arm64: BuildKit's TARGETARCH picks the Rust target.
    assert!(has("ARG TARGETARCH"), "ARG TARGETARCH");
    for (arch, target) in [
        ("amd64", "x86_64-unknown-linux-gnu"),
        ("arm64", "aarch64-unknown-linux-gnu"),
    ] {
        assert!(
            lines
                .iter()
                .any(|line| line.starts_with(&format!("{arch}) target={target};"))),
            "TARGETARCH {arch} maps to {target}"
        );
    }
    assert!(
        dockerfile.contains(r#"cargo build --locked --release --target "$target""#),
        "builds for the mapped target"
    );
    assert!(
        has("FROM scratch") || has("FROM gcr.io/distroless/static-debian12:nonroot"),
        "an empty runtime stage"
    );
    assert!(has(&format!("USER {UID}:{UID}")), "USER {UID}:{UID}");
    assert!(
        has(&format!("EXPOSE {HTTPS_PORT} {PROBE_PORT}")),
        "EXPOSE {HTTPS_PORT} {PROBE_PORT}"
    );
    for (name, value) in virt_sizer::ALLOCATOR_ENV {
        assert!(
            has(&format!("ENV {name}={value}")),
            "ENV {name}={value} (virt_sizer::ALLOCATOR_ENV)"
        );
    }
    assert!(has(r#"ENTRYPOINT ["/virt-sizer"]"#), "ENTRYPOINT");
    assert!(has(r#"CMD ["serve"]"#), "CMD");
    assert!(
        dockerfile.contains("cargo build --locked --release"),
        "locked release build"
    );
    assert!(dockerfile.contains("+crt-static"), "static binary");
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).expect(".dockerignore");
    assert!(
        ignore.lines().any(|line| line.trim() == "*"),
        "the context is an allowlist"
    );
    // What cargo builds from is in the context and copied into the builder;
    // the build script included (it names the commit in `--version`).
    for input in ["Cargo.toml", "Cargo.lock", "build.rs", "src", "benches"] {
        if !repo().join(input).exists() {
            continue;
        }
        assert!(
            ignore
                .lines()
                .any(|line| line.trim().trim_end_matches('/') == format!("!{input}")),
            ".dockerignore keeps {input} out of the context"
        );
        assert!(
            lines.iter().any(|line| {
                line.starts_with("COPY ") && line.split_whitespace().any(|word| word == input)
            }),
            "the Dockerfile does not COPY {input}"
        );
    }
    // The context has no .git: the commit comes as a build argument.
    assert!(
        has("ARG VIRT_SIZER_COMMIT"),
        "ARG VIRT_SIZER_COMMIT (read by build.rs)"
    );
}
