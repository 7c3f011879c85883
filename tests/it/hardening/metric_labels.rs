//! Labels from closed sets.

use super::*;

#[tokio::test]
async fn distinct_operation_values_add_no_metric_series() {
    let state = AppState::new(
        PolicyStore::builtin(),
        None,
        Arc::new(NoVmis),
        Arc::new(StaticNamespaces::default()),
        Duration::from_secs(1),
    );
    let router = server::app(state.clone());
    let review = |operation: String| {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "operation": operation, "namespace": "n",
                "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}}})
        .to_string()
    };
    let send = |body: String| {
        let router = router.clone();
        async move {
            let response = router
                .oneshot(
                    Request::post("/mutate")
                        .header("content-type", "application/json")
                        .body(Body::from(body))
                        .expect("request"),
                )
                .await
                .expect("response");
            assert_eq!(response.status(), StatusCode::OK);
        }
    };
    let series = || {
        state
            .metrics()
            .render()
            .lines()
            .filter(|line| !line.starts_with('#'))
            .count()
    };
    send(review("WARM-UP".into())).await;
    let before = series();
    for index in 0..10_000 {
        send(review(format!("OPERATION-{index}-{}", "x".repeat(64)))).await;
    }
    assert_eq!(series(), before, "client operations became series");
    assert!(
        state
            .metrics()
            .render()
            .contains("operation=\"other\",outcome=\"skipped\"} 10001")
    );
}

/// Finds the example VMI whatever namespace a launcher Pod claims, so
/// that reviews forged for any namespace are sized.
struct EveryNamespace(Arc<virt_sizer::sizing::vmi::ReadVmi>);

impl VmiSource for EveryNamespace {
    fn get<'a>(
        &'a self,
        _namespace: &'a str,
        _name: &'a str,
    ) -> virt_sizer::server::vmi_source::BoxFuture<
        'a,
        Result<Option<Arc<virt_sizer::sizing::vmi::ReadVmi>>, String>,
    > {
        Box::pin(async move { Ok(Some(self.0.clone())) })
    }
    fn is_ready(&self) -> bool {
        true
    }
    fn describe(&self) -> String {
        "every namespace".into()
    }
}

#[tokio::test]
async fn shadow_figures_are_labelled_by_the_objects_namespace_as_the_policy_names_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    // Shadow everywhere; the rules name `staging` and the glob `team-*`.
    std::fs::write(
        &policy,
        "apiVersion: virt-sizer.io/v1alpha1\nkind: SizingPolicy\n\
         profiles:\n  default: {mode: Shadow, cpuAllocationRatio: 20}\n\
         rules:\n  - {namespaces: [staging, \"team-*\"], profile: default}\n",
    )
    .expect("write");
    let vmi: Value = yaml_serde::from_str(
        &std::fs::read_to_string(repo("examples/vmi-dev.yaml")).expect("read"),
    )
    .expect("yaml");
    let state = AppState::new(
        PolicyStore::from_file(&policy).expect("policy"),
        None,
        Arc::new(EveryNamespace(Arc::new(
            virt_sizer::sizing::vmi::ReadVmi::from_value(&vmi),
        ))),
        Arc::new(StaticNamespaces::default()),
        Duration::from_secs(5),
    );
    let router = server::app(state.clone());
    let review = |request_namespace: &str, object_namespace: &str| {
        let mut review: Value = serde_json::from_str(EXAMPLE_REVIEW).expect("json");
        review["request"]["namespace"] = json!(request_namespace);
        review["request"]["object"]["metadata"]["namespace"] = json!(object_namespace);
        serde_json::to_vec(&review).expect("json")
    };
    // 200 forged namespaces first (before, the first 64 seen took every
    // label slot and `staging` fell into `_other`)…
    let mut bodies: Vec<Vec<u8>> = (0..200)
        .map(|index| review(&format!("tenant-{index}"), &format!("tenant-{index}")))
        .collect();
    // …then the object's namespace counts, not the request's…
    bodies.push(review("forged", "staging"));
    // …and a namespace a glob names is labelled with the glob.
    bodies.push(review("team-a", "team-a"));
    for body in bodies {
        let (status, answer) =
            crate::bad_input::post(&router, Some("application/json"), body).await;
        assert_eq!(status, StatusCode::OK);
        let answer: Value = serde_json::from_slice(&answer).expect("json");
        assert_eq!(
            answer["response"]["auditAnnotations"]["mode"], "Shadow",
            "{answer}"
        );
    }
    let metrics = state.metrics().render();
    let labels: std::collections::BTreeSet<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("virt_sizer_shadow_cpu_request_delta_cores{"))
        .filter_map(|line| line.split("namespace=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(
        labels,
        std::collections::BTreeSet::from([
            virt_sizer::metrics::OTHER_NAMESPACES,
            "staging",
            "team-*"
        ]),
        "{metrics}"
    );
    // One review each: 12 vCPUs / 20 = 600m against KubeVirt's 1200m.
    assert!(
        metrics.contains(
            "virt_sizer_shadow_cpu_request_delta_cores{namespace=\"staging\",profile=\"default\"} -0.6"
        ),
        "{metrics}"
    );
}
