//! The policy ConfigMap is checked at apply time by the shipped
//! ValidatingWebhookConfiguration (`POST /validate-policy`): a broken
//! policy in a ConfigMap labelled `virt-sizer.io/policy=true` is refused on
//! CREATE and UPDATE with the checker's own messages (every problem, with
//! its field path, as `virt-sizer policy check` prints them); a valid one
//! is accepted; an unlabelled ConfigMap, or one in another namespace than
//! virt-sizer's own, is none of its business.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use super::api::{self, Kind};
use super::control_plane;
use super::webhook::{Serve, policy, register};

/// The base's namespace: the only one the policy webhook selects.
const NAMESPACE: &str = "virt-sizer";
/// A tenant's namespace.
const OTHER_NAMESPACE: &str = "policy-e2e";

/// Two problems: a ratio below 1 and an overcommit below 10 %.
const BROKEN: &str = "apiVersion: virt-sizer.io/v1alpha1\nkind: SizingPolicy\nprofiles:\n  \
                      default:\n    cpuAllocationRatio: 0\n    memoryOvercommitPercent: 5\n";

fn config_map(name: &str, labelled: bool, policy_text: &str) -> Value {
    config_map_in(NAMESPACE, name, labelled, policy_text)
}

fn config_map_in(namespace: &str, name: &str, labelled: bool, policy_text: &str) -> Value {
    let mut config_map = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"policy.yaml": policy_text},
    });
    if labelled {
        config_map["metadata"]["labels"] = json!({"virt-sizer.io/policy": "true"});
    }
    config_map
}

/// What `virt-sizer policy check` says about `text`, one line per problem
/// without the file name.
fn checker_lines(text: &str) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, text).expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_virt-sizer"))
        .args(["policy", "check"])
        .arg(&path)
        .output()
        .expect("virt-sizer policy check runs");
    assert_eq!(output.status.code(), Some(1), "the checker rejects it");
    let prefix = format!("{}: ", path.display());
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .chain(std::str::from_utf8(&output.stderr).expect("utf-8").lines())
        .filter_map(|line| line.strip_prefix(&prefix))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_policies_are_refused_at_apply_time_with_the_checkers_messages() {
    let Some(session) = control_plane::session().await else {
        return;
    };
    let client = &session.client;
    let server = Serve::with_e2e_policy().start(session.plane).await;
    let configurations = server.webhook_configurations(session.plane, "manifests/base");
    let validating: Vec<&Value> = configurations
        .iter()
        .filter(|configuration| configuration["kind"] == "ValidatingWebhookConfiguration")
        .collect();
    assert_eq!(validating.len(), 1, "the base ships the policy webhook");
    assert!(
        validating[0]["webhooks"][0]["clientConfig"]["url"]
            .as_str()
            .is_some_and(|url| url.ends_with("/validate-policy"))
    );
    register(&session, &configurations).await;
    api::namespace(client, NAMESPACE, &[]).await;
    api::namespace(client, OTHER_NAMESPACE, &[]).await;

    // The validating webhook registers on its own schedule: wait until a
    // broken policy is refused (dry run), then check the real thing.
    let broken = config_map("broken", true, BROKEN);
    api::eventually(
        "the policy webhook to take effect",
        Duration::from_secs(20),
        async || {
            api::try_create_dry_run(client, Kind::ConfigMap, &broken)
                .await
                .is_err()
        },
    )
    .await;
    let refused = api::try_create(client, Kind::ConfigMap, &broken)
        .await
        .expect_err("a broken policy is refused");
    let message = api::refusal(&refused);
    let expected = checker_lines(BROKEN);
    assert_eq!(expected.len(), 2, "{expected:?}");
    assert!(
        expected[0].starts_with("profiles.default.cpuAllocationRatio: "),
        "{expected:?}"
    );
    for line in &expected {
        assert!(
            message.contains(line.as_str()),
            "{line:?} not in {message:?}"
        );
    }
    assert!(message.contains("policy.virt-sizer.io"), "{message}");

    // A valid policy (the e2e one) is accepted, then refused when an UPDATE
    // breaks it.
    let valid_text = std::fs::read_to_string(policy()).expect("readable");
    let stored = api::create(
        client,
        Kind::ConfigMap,
        &config_map("valid", true, &valid_text),
    )
    .await;
    let mut edited = stored.clone();
    edited["data"]["policy.yaml"] = json!(BROKEN);
    let refused = api::try_replace(client, Kind::ConfigMap, &edited)
        .await
        .expect_err("breaking it on UPDATE is refused");
    assert!(
        api::refusal(&refused).contains(expected[0].as_str()),
        "{}",
        api::refusal(&refused)
    );

    // Without the label the webhook never sees it; nor, labelled, in a
    // tenant's namespace (where any tenant could make it cost a check).
    api::create(
        client,
        Kind::ConfigMap,
        &config_map("unlabelled", false, BROKEN),
    )
    .await;
    api::create(
        client,
        Kind::ConfigMap,
        &config_map_in(OTHER_NAMESPACE, "elsewhere", true, BROKEN),
    )
    .await;
}
