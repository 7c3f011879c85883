//! `virt-sizer plan`.

use super::*;

#[test]
fn plan_counts_vms_per_node() {
    // Built-in policy, 4 vCPU × 16Gi: cpu 4/10 = 400m; memory 16Gi + overhead
    // (220Mi + 4 × 8Mi + 8Mi + 32Mi = 292Mi) = 16676Mi.
    // 256Gi = 262144Mi → ⌊262144 / 16676⌋ = 15 (memory); ⌊64000m / 400m⌋ = 160 (cpu).
    let output = virt_sizer(&["plan", "--node", "cpu=64,memory=256Gi", "--vm", "4x16Gi"]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    let row = text
        .lines()
        .find(|line| line.starts_with("default"))
        .expect("default row");
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &columns[..6],
        ["default", "4x16Gi", "400m", "16676Mi", "-", "15"],
        "{row}"
    );
    assert_eq!(columns[6], "memory");

    let output = virt_sizer(&["plan", "--node", "cpu=64", "--vm", "4x16Gi"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn plan_refuses_a_memory_or_page_size_that_cannot_be() {
    // `4x16` is 16 bytes of memory, not 16Gi.
    let output = virt_sizer(&["plan", "--node", "cpu=64,memory=256Gi", "--vm", "4x16"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("cannot be a VM (did you mean 16Gi?)"),
        "{}",
        stderr(&output)
    );
    // 2M is 2,000,000 bytes: no hugepage size; the node's resource is
    // hugepages-2Mi.
    let output = virt_sizer(&[
        "plan",
        "--node",
        "cpu=64,memory=256Gi",
        "--vm",
        "4x16Gi,hugepages=2M",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output)
            .contains("2M is not a hugepage size on amd64 (2Mi, 1Gi); did you mean 2Mi?"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn plan_columns_line_up() {
    let output = virt_sizer(&[
        "plan",
        "--policy",
        "examples/policy.yaml",
        "--node",
        "cpu=64,memory=256Gi,hugepages-1Gi=128Gi",
        "--vm",
        "2x4Gi",
        "--vm",
        "16x64Gi,dedicated",
        "--vm",
        "8x32Gi,hugepages=1Gi",
    ]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    let mut lines = text.lines().skip(1);
    let header = lines.next().expect("header");
    // Numbers end where their header ends; the last column starts where its
    // header starts.
    let fit_end = header.find("fit").expect("fit") + "fit".len();
    let held_start = header.find("guest memory held").expect("last column");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 15, "5 profiles × 3 VMs\n{text}");
    for row in rows {
        let bytes = row.as_bytes();
        assert!(bytes[fit_end - 1].is_ascii_digit(), "{row}\n{header}");
        assert_eq!(bytes[fit_end], b' ', "{row}\n{header}");
        assert_ne!(bytes[held_start], b' ', "{row}\n{header}");
        assert_eq!(bytes[held_start - 1], b' ', "{row}\n{header}");
    }
}

/// A KubeVirt CR of a release older than the overhead table leaves its
/// overhead model unknown: `plan` does not plan from the 1.9 line's
/// formulas standing in for it, and says why, as the webhook does.
#[test]
fn plan_does_not_plan_from_unknown_kubevirt_settings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cr = dir.path().join("kv.yaml");
    std::fs::write(
        &cr,
        "apiVersion: kubevirt.io/v1\nkind: KubeVirt\nmetadata: {name: kubevirt, namespace: kubevirt}\n\
         status: {observedKubeVirtVersion: v1.4.2}\n",
    )
    .expect("write");
    let output = virt_sizer(&[
        "plan",
        "--kubevirt",
        cr.to_str().expect("utf-8"),
        "--node",
        "cpu=64,memory=256Gi",
        "--vm",
        "4x16Gi",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        !stdout(&output)
            .lines()
            .any(|line| line.starts_with("default")),
        "{}",
        stdout(&output)
    );
    assert!(
        stderr(&output).contains(
            "profile default: not planned, the KubeVirt settings observedKubeVirtVersion are unknown"
        ),
        "{}",
        stderr(&output)
    );
}
