//! Same bytes as `virt-sizer review`.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_answers_the_same_bytes_as_review_for_every_fixture_case() {
    let pem = pair();
    let http = client(&[&pem.ca_pem]);
    let mut compared = 0;
    for case_file in fixture_cases() {
        let case: Case = yaml_serde::from_str(&std::fs::read_to_string(&case_file).expect("read"))
            .unwrap_or_else(|error| panic!("{}: {error}", case_file.display()));
        let base = case_file.parent().expect("dir").to_owned();
        let dir = tempfile::tempdir().expect("tempdir");
        // A server per case: its policy, its VMIs, its namespace labels.
        let mut setup = setup_in(dir.path(), &pem);
        setup.policy = case.policy.as_ref().map(|path| base.join(path));
        let vmi_dir = dir.path().join("vmis");
        std::fs::create_dir(&vmi_dir).expect("mkdir");
        let vmis: Vec<PathBuf> = match &case.vmi {
            OneOrMany::None => Vec::new(),
            OneOrMany::One(path) => vec![base.join(path)],
            OneOrMany::Many(paths) => paths.iter().map(|path| base.join(path)).collect(),
        };
        for (index, vmi) in vmis.iter().enumerate() {
            std::fs::copy(vmi, vmi_dir.join(format!("{index}.yaml"))).expect("copy");
        }
        setup.vmis = Arc::new(VmiDirectory::new(&vmi_dir).expect("vmi dir"));
        let namespace = case.namespace.name.unwrap_or_else(|| "default".to_owned());
        let labels = case.namespace.labels;
        setup.namespaces.insert(namespace.clone(), labels.clone());
        let server = TestServer::start(setup).await;

        let input = base.join(&case.input);
        let operation = case.operation.as_str();
        let document = virt_sizer::documents::read_document(&input).expect("input");
        let request = virt_sizer::commands::request_from_document(document, &namespace, operation)
            .expect("request");
        let review = serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}))
            .expect("json");
        let review_file = dir.path().join("review.json");
        std::fs::write(&review_file, &review).expect("write");

        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_virt-sizer"));
        command.arg("review");
        if let Some(policy) = &case.policy {
            command.arg("--policy").arg(base.join(policy));
        }
        for vmi in &vmis {
            command.arg("--vmi").arg(vmi);
        }
        let label_text = labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        command
            .arg("--namespace-labels")
            .arg(label_text)
            .arg(&review_file);
        let output = command.output().expect("runs");
        assert!(
            output.status.success(),
            "{}: {}",
            case_file.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let cli_bytes = output.stdout.strip_suffix(b"\n").expect("newline").to_vec();

        let response = post_review(&http, &server.url("/mutate"), &review).await;
        assert_eq!(response.status(), StatusCode::OK);
        let server_bytes = response.bytes().await.expect("body").to_vec();
        assert_eq!(
            String::from_utf8_lossy(&server_bytes),
            String::from_utf8_lossy(&cli_bytes),
            "{}",
            case_file.display()
        );
        server.stop().await;
        compared += 1;
    }
    assert!(compared >= 15, "only {compared} fixture cases compared");
}

fn fixture_cases() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![repo("tests/fixtures/cases")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml")
                && std::fs::read_to_string(&path).is_ok_and(|text| text.contains("\nexpect:"))
            {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}
