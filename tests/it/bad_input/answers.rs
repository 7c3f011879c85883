//! Judging an answer against what its row expects, and a smoke check that
//! [`check_answer`] reads the baseline patch right.

use super::*;

/// Whether the answer (`status`, `answer`) to `body` is what `expect` says.
pub(super) fn judge(
    expect: Expect,
    body: &[u8],
    status: StatusCode,
    answer: &[u8],
) -> Result<(), String> {
    let text = String::from_utf8_lossy(answer);
    let short = |text: &str| text.chars().take(600).collect::<String>();
    if let Expect::Rejected(expected, message) = expect {
        if status != expected {
            return Err(format!(
                "status {status}, expected {expected}: {}",
                short(&text)
            ));
        }
        if !text.contains(message) {
            return Err(format!("body {:?} lacks {message:?}", short(&text)));
        }
        return Ok(());
    }
    if status != StatusCode::OK {
        return Err(format!("status {status}, expected 200: {}", short(&text)));
    }
    let answer = check_answer(body, answer)?;
    if !answer.verified {
        return Err("the request could not be read back to check the answer".into());
    }
    let response = answer.response;
    let warnings: Vec<String> = response["warnings"]
        .as_array()
        .map(|warnings| {
            warnings
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let has_patch = response.get("patch").is_some();
    let failed = warnings
        .iter()
        .any(|warning| warning.contains("could not size"));
    let warned = |needle: &str| warnings.iter().any(|warning| warning.contains(needle));
    let problem = match expect {
        _ if response["allowed"] != true => Some("not allowed"),
        Expect::Rejected(..) => None,
        Expect::Skipped if has_patch => Some("a patch"),
        Expect::Skipped if !warnings.is_empty() => Some("warnings"),
        Expect::CouldNotSize(needle) if !failed || !warned(needle) => {
            Some("no matching could-not-size warning")
        }
        Expect::Patched(needle) if !has_patch || failed || !warned(needle) => {
            Some("no patch or no matching warning")
        }
        _ => None,
    };
    match problem {
        Some(problem) => Err(format!(
            "{problem}; expected {expect:?}, got {}",
            short(&response.to_string())
        )),
        None => Ok(()),
    }
}

/// Every quantity the patched compute container holds is a valid quantity
/// (a smoke check on the baseline that [`check_answer`] reads patches right).
#[tokio::test]
async fn the_baseline_patch_yields_valid_quantities() {
    let (router, _) = router();
    let (status, answer) = post(&router, JSON, EXAMPLE_REVIEW.into()).await;
    assert_eq!(status, StatusCode::OK);
    let response = check_answer(EXAMPLE_REVIEW.as_bytes(), &answer)
        .expect("invariants")
        .response;
    assert_eq!(response["uid"], EXAMPLE_UID);
    let ops = base64::engine::general_purpose::STANDARD
        .decode(response["patch"].as_str().expect("a patch"))
        .expect("base64");
    let patch: json_patch::Patch = serde_json::from_slice(&ops).expect("patch");
    let mut pod = example()["request"]["object"].clone();
    json_patch::patch(&mut pod, &patch).expect("applies");
    for section in ["requests", "limits"] {
        for (name, value) in pod["spec"]["containers"][0]["resources"][section]
            .as_object()
            .into_iter()
            .flatten()
        {
            let text = value.as_str().expect("a string quantity");
            assert!(Quantity::parse(text).is_ok(), "{section}.{name}: {text}");
        }
    }
}
