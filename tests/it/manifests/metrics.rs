//! Tests: the alerts and the dashboard name only exported metrics.

use super::*;

/// Every sample name a `/metrics` text can hold: from each `# TYPE` line
/// (counters as `_total`, histograms as `_bucket`, `_sum`, `_count`, info
/// as `_info`), plus every sample actually present.
pub(crate) fn exported_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split_whitespace();
            let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                "summary" => &["", "_sum", "_count"],
                "info" => &["_info"],
                _ => &[""],
            };
            for suffix in suffixes {
                names.insert(format!("{name}{suffix}"));
            }
        } else if !line.starts_with('#') {
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names
}

/// The metric names a PromQL expression selects: every identifier that is
/// not a function, an aggregation, a keyword, a label in `by (…)` and the
/// like, or inside `{…}`, `[…]` or a string.
pub(crate) fn promql_metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "atan2",
        "inf",
        "nan",
    ];
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    // Strings, label matchers and ranges first.
    let mut plain = String::new();
    let mut depth_brace = 0;
    let mut depth_bracket = 0;
    let mut quote: Option<char> = None;
    for c in expr.chars() {
        match (quote, c) {
            (Some(open), c) if c == open => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'' | '`') => quote = Some(c),
            (None, '{') => depth_brace += 1,
            (None, '}') => depth_brace -= 1,
            (None, '[') => depth_bracket += 1,
            (None, ']') => depth_bracket -= 1,
            (None, c) if depth_brace == 0 && depth_bracket == 0 => plain.push(c),
            _ => {}
        }
        if depth_brace > 0 || depth_bracket > 0 {
            plain.push(' ');
        }
    }
    let mut names = BTreeSet::new();
    let chars: Vec<char> = plain.chars().collect();
    let mut index = 0;
    let mut skip_group = false;
    while index < chars.len() {
        let c = chars[index];
        if c.is_ascii_digit() || c == '.' {
            // A number (0.99, 14, 1e3): skip it whole.
            while index < chars.len()
                && (chars[index].is_ascii_alphanumeric() || chars[index] == '.')
            {
                index += 1;
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = index;
            while index < chars.len()
                && (chars[index].is_ascii_alphanumeric()
                    || chars[index] == '_'
                    || chars[index] == ':')
            {
                index += 1;
            }
            let word: String = chars[start..index].iter().collect();
            let rest: String = chars[index..].iter().collect();
            let rest = rest.trim_start();
            let next = rest.chars().next();
            // `sum by (le) (…)`: an aggregation with its modifier first.
            let next_word: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let is_call = next == Some('(') || ["by", "without"].contains(&next_word.as_str());
            if GROUPING.contains(&word.as_str()) {
                skip_group = next == Some('(');
            } else if !KEYWORDS.contains(&word.as_str()) && !is_call {
                names.insert(word);
            }
            continue;
        }
        if c == '(' && skip_group {
            // by (le, resource): labels, not metrics.
            while index < chars.len() && chars[index] != ')' {
                index += 1;
            }
            skip_group = false;
        }
        index += 1;
    }
    names
}

#[test]
fn promql_names_are_read_as_prometheus_would() {
    let names = promql_metric_names(
        r#"histogram_quantile(0.99, sum by (le) (rate(a_bucket{job="x",le=~"0.1|b"}[5m]))) > 0.5
           or absent(b{job="virt-sizer"}) and on (pod) c - time() < 14 * 86400
           unless sum without (instance) (d) / max(e:rate5m) == bool 1e3"#,
    );
    let expected: BTreeSet<String> = ["a_bucket", "b", "c", "d", "e:rate5m"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(names, expected);
}

/// What the binary exports once it has decided (a shadow decision, a
/// patch, a 400), and in cluster mode (the caches' series, here with an
/// apiserver that does not answer).
fn scrape_running_servers() -> String {
    use crate::operations::RunningServer;
    let temp = tempfile::tempdir().expect("tempdir");
    let policy = temp.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: virt-sizer.io/v1alpha1\nkind: SizingPolicy\n\
         profiles: {default: {}, try: {cpuAllocationRatio: 20, mode: Shadow}}\n\
         rules: [{namespaces: [dev-a], profile: try}]\n\
         kata: {runtimeClasses: {kata-qemu: {runtime: go, vmm: {cpu: 250m, memory: 160Mi}, guestMemory: Account}}}\n",
    )
    .expect("write policy");
    let examples = repo().join("examples");
    let offline = RunningServer::start(&[
        "--vmi-dir".as_ref(),
        examples.as_os_str(),
        "--policy".as_ref(),
        policy.as_os_str(),
    ]);
    for (file, status) in [
        ("launcher-pod-dev.json", 200),
        ("runtimeclass-kata-qemu.json", 200),
    ] {
        let body = std::fs::read(examples.join(file)).expect("example review");
        assert_eq!(offline.post("application/json", body).0, status, "{file}");
    }
    assert_eq!(offline.post("text/plain", b"{}".to_vec()).0, 400);
    let mut text = offline.metrics();
    for series in [
        "virt_sizer_shadow_memory_request_delta_bytes{",
        "virt_sizer_admission_patches_total{kind=\"runtime_class\"} 1",
        "virt_sizer_admission_errors_total{reason=\"bad_request\"} 1",
    ] {
        assert!(text.contains(series), "{series} in\n{text}");
    }

    let kubeconfig = temp.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\n\
         clusters: [{name: c, cluster: {server: \"https://127.0.0.1:1\", insecure-skip-tls-verify: true}}]\n\
         users: [{name: u, user: {token: t}}]\n\
         contexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n",
    )
    .expect("write kubeconfig");
    let cluster = RunningServer::start(&[
        "--cluster".as_ref(),
        "true".as_ref(),
        "--kubeconfig".as_ref(),
        kubeconfig.as_os_str(),
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let scraped = cluster.metrics();
        if scraped.contains("virt_sizer_cache_failing{") {
            text.push_str(&scraped);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no cache series:\n{scraped}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    text
}

/// The prefix of the apiserver's own metrics, which the monitoring
/// component also reads: checked against a real apiserver by the e2e test
/// `failure_policy`, not against the binary.
pub(crate) const APISERVER_METRICS: &str = "apiserver_";

/// Every expression of the PrometheusRule and the dashboard, with where it
/// is (`alert X`, `panel "Y"`, `variable Z`).
pub(crate) fn monitoring_expressions() -> Vec<(String, String)> {
    let monitoring = manifests_dir().join("components/monitoring");
    let mut expressions: Vec<(String, String)> = Vec::new();
    for doc in read_docs(&monitoring.join("prometheusrule.yaml")) {
        for group in list(doc.value.pointer("/spec/groups")) {
            for rule in list(group.get("rules")) {
                let name = str_at(rule, "/alert")
                    .or_else(|| str_at(rule, "/record"))
                    .unwrap_or("?");
                expressions.push((
                    format!("alert {name}"),
                    str_at(rule, "/expr").unwrap_or_default().to_owned(),
                ));
            }
        }
    }
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(monitoring.join("dashboard.json")).expect("dashboard.json"),
    )
    .expect("dashboard JSON");
    for panel in list(dashboard.get("panels")) {
        for target in list(panel.get("targets")) {
            expressions.push((
                format!("panel {:?}", str_at(panel, "/title").unwrap_or("?")),
                str_at(target, "/expr").unwrap_or_default().to_owned(),
            ));
        }
    }
    for variable in list(dashboard.pointer("/templating/list")) {
        if let Some(query) = str_at(variable, "/query/query") {
            // label_values(metric, label)
            let metric = query
                .trim_start_matches("label_values(")
                .split(',')
                .next()
                .unwrap_or_default();
            expressions.push((format!("variable {query}"), metric.to_owned()));
        }
    }
    assert!(expressions.len() > 20, "{expressions:?}");
    expressions
}

/// Every metric the PrometheusRule's expressions and the dashboard's
/// queries name is exported by the binary (the apiserver's own aside).
#[test]
fn alerts_and_dashboard_name_only_metrics_the_binary_exports() {
    let exported = exported_names(&scrape_running_servers());
    let mut missing = Vec::new();
    for (origin, expr) in &monitoring_expressions() {
        let names = promql_metric_names(expr);
        if names.is_empty() {
            missing.push(format!("{origin}: names no metric: {expr}"));
        }
        for name in names {
            if !name.starts_with(APISERVER_METRICS) && !exported.contains(&name) {
                missing.push(format!("{origin}: {name} is not exported"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{}\nexported: {exported:?}",
        missing.join("\n")
    );
}
