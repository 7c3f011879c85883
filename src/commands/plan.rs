//! `virt-sizer plan`: what the scheduler reserves per VM under each profile,
//! and how many such VMs fit on a node.
//!
//! Each VM shape becomes a minimal VMI (`cores: N`, `guest: MEM`), sized
//! with the same core as admission. The count that fits is the smallest of
//! `node cpu / cpu request` and `node memory / memory request` (hugepages
//! count against the node's `hugepages-<size>` when given, else against its
//! memory).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use serde_json::json;

use crate::cli::PlanArgs;
use crate::commands::load_policy_over;
use crate::sizing::Quantity;
use crate::sizing::kubevirt::{self, AutoLimits, LauncherInput};
use crate::sizing::policy::SettingsNeeds;
use crate::sizing::vmi::VmiFacts;

/// One `--vm` shape.
#[derive(Debug, Clone)]
struct Shape {
    text: String,
    vcpus: u32,
    guest: Quantity,
    dedicated: bool,
    hugepages: Option<String>,
}

/// Runs `virt-sizer plan`.
///
/// # Errors
/// Unparseable `--node` or `--vm`, or an invalid policy.
pub fn run(args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let policy = load_policy_over(args.policy.as_deref(), args.kubevirt.as_deref())?;
    let node = parse_node(&args.node).context("--node")?;
    let node_cpu_millis = node
        .get("cpu")
        .context("--node: cpu=… is required")?
        .milli_value();
    let node_memory = node
        .get("memory")
        .context("--node: memory=… is required")?
        .value();
    let shapes = args
        .vms
        .iter()
        .map(|text| {
            parse_shape(text, &policy.kubevirt.architecture).with_context(|| format!("--vm {text}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    let mut rows: Vec<[String; COLUMNS]> = vec![HEADER.map(str::to_owned)];
    let empty_labels = BTreeMap::new();
    for profile in policy.profiles.values() {
        // As the webhook: never planned from defaults standing in for
        // KubeVirt settings that are unknown (an unusable --kubevirt file).
        let unknown = policy.unknown_settings(&profile.name, SettingsNeeds::default());
        if !unknown.is_empty() {
            let names: Vec<&str> = unknown
                .iter()
                .map(|unknown| unknown.setting.as_str())
                .collect();
            eprintln!(
                "virt-sizer: profile {}: not planned, the KubeVirt settings {} are unknown ({})",
                profile.name,
                names.join(", "),
                unknown
                    .iter()
                    .map(|unknown| unknown.reason.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            continue;
        }
        for shape in &shapes {
            let vmi = synthetic_vmi(shape)?;
            let sizing = kubevirt::size_launcher(&LauncherInput {
                vmi: &vmi,
                settings: &policy.kubevirt,
                profile,
                namespace_labels: &empty_labels,
                auto_limits: AutoLimits::default(),
                reported_overhead: None,
            })?;
            let cpu = sizing.requests.get("cpu").copied();
            let memory = sizing.requests.get("memory").copied();
            let hugepages = sizing
                .requests
                .iter()
                .find(|(name, _)| name.starts_with("hugepages-"))
                .map(|(name, quantity)| (name.clone(), *quantity));
            let cpu_millis = cpu.map_or(0, |cpu| cpu.milli_value());
            let memory_bytes = memory.map_or(0, |memory| memory.value());
            let mut limits: Vec<(i128, &str)> = Vec::new();
            if cpu_millis > 0 {
                limits.push((node_cpu_millis / cpu_millis, "cpu"));
            }
            match &hugepages {
                Some((name, amount)) if node.contains_key(name) => {
                    limits.push((node[name].value() / amount.value().max(1), "hugepages"));
                    if memory_bytes > 0 {
                        limits.push((node_memory / memory_bytes, "memory"));
                    }
                }
                Some((_, amount)) => {
                    let total = memory_bytes + amount.value();
                    limits.push((node_memory / total.max(1), "memory"));
                }
                None if memory_bytes > 0 => limits.push((node_memory / memory_bytes, "memory")),
                None => {}
            }
            let (fit, limited_by) = limits
                .into_iter()
                .min_by_key(|(count, _)| *count)
                .unwrap_or((0, "-"));
            let held = shape.guest.value() * fit;
            rows.push([
                profile.name.clone(),
                shape.text.clone(),
                cpu.map_or_else(|| "-".to_owned(), |cpu| cpu.to_string()),
                memory.map_or_else(|| "-".to_owned(), |memory| memory.to_string()),
                hugepages.map_or_else(|| "-".to_owned(), |(_, amount)| amount.to_string()),
                fit.to_string(),
                limited_by.to_owned(),
                format!(
                    "{} ({}% of node memory)",
                    human_bytes(held),
                    if node_memory > 0 {
                        held * 100 / node_memory
                    } else {
                        0
                    }
                ),
            ]);
        }
    }

    let mut out = format!(
        "node: cpu {}, memory {}    policy {}\n",
        node["cpu"], node["memory"], policy.digest
    );
    // Each column as wide as its widest cell; numbers right-aligned.
    let mut widths = [0; COLUMNS];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in &rows {
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            let width = widths[index];
            let _ = match index {
                _ if index == COLUMNS - 1 => write!(line, "{cell}"),
                2..=5 => write!(line, "{cell:>width$}  "),
                _ => write!(line, "{cell:<width$}  "),
            };
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The table's columns; the last is free text.
const COLUMNS: usize = 8;
const HEADER: [&str; COLUMNS] = [
    "profile",
    "vm",
    "cpu request",
    "memory request",
    "hugepages",
    "fit",
    "limit by",
    "guest memory held",
];

/// Below this a `--vm` memory is a unit slip (`4x16` is 16 bytes), not a VM.
const MIN_GUEST_BYTES: i128 = 1 << 20;

/// The hugepage sizes the kernel offers on `architecture`, spelled as
/// KubeVirt's `pageSize` and the node's `hugepages-<size>` resource are.
fn page_sizes(architecture: &str) -> &'static [&'static str] {
    match architecture {
        "arm64" => &["64Ki", "2Mi", "32Mi", "512Mi", "1Gi", "16Gi"],
        "s390x" => &["1Mi", "2Gi"],
        "ppc64le" => &["2Mi", "1Gi", "16Mi", "16Gi"],
        _ => &["2Mi", "1Gi"],
    }
}

/// `16` → `16Gi`: the number as written, in the unit VMs are sized in.
fn gibibyte_hint(text: &str) -> String {
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    if digits.is_empty() {
        "<n>Gi".to_owned()
    } else {
        format!("{digits}Gi")
    }
}

fn parse_node(text: &str) -> anyhow::Result<BTreeMap<String, Quantity>> {
    text.split(',')
        .filter(|entry| !entry.trim().is_empty())
        .map(|entry| {
            let (name, value) = entry
                .split_once('=')
                .with_context(|| format!("{entry:?} is not name=quantity"))?;
            let quantity = Quantity::parse(value.trim())?;
            if quantity.is_negative() || quantity.is_zero() {
                bail!("{name}: must be positive, got {value}");
            }
            Ok((name.trim().to_owned(), quantity))
        })
        .collect()
}

/// `4x16Gi`, `4x16Gi,dedicated`, `8x32Gi,hugepages=1Gi`; hugepage sizes
/// are those of `architecture`.
fn parse_shape(text: &str, architecture: &str) -> anyhow::Result<Shape> {
    let mut parts = text.split(',');
    let size = parts.next().unwrap_or_default();
    let (vcpus, guest) = size
        .split_once(['x', 'X'])
        .context("expected VCPUSxMEMORY, e.g. 4x16Gi")?;
    let vcpus: u32 = vcpus.trim().parse().context("vCPU count")?;
    if vcpus == 0 {
        bail!("vCPU count must be at least 1");
    }
    let guest_text = guest.trim();
    let guest = Quantity::parse(guest_text)?;
    if guest.is_negative() || guest.is_zero() {
        bail!("memory must be positive");
    }
    if guest.value() < MIN_GUEST_BYTES {
        bail!(
            "memory {guest_text} is {} bytes: that cannot be a VM (did you mean {}?)",
            guest.value(),
            gibibyte_hint(guest_text)
        );
    }
    let mut shape = Shape {
        text: text.to_owned(),
        vcpus,
        guest,
        dedicated: false,
        hugepages: None,
    };
    for option in parts {
        match option.trim().split_once('=') {
            None if option.trim() == "dedicated" => shape.dedicated = true,
            Some(("hugepages", size)) => {
                let sizes = page_sizes(architecture);
                if !sizes.contains(&size) {
                    let value = Quantity::parse(size).ok().map(|q| q.value());
                    let digits: String = size.chars().take_while(char::is_ascii_digit).collect();
                    let hint = sizes
                        .iter()
                        .find(|known| Quantity::parse(known).ok().map(|q| q.value()) == value)
                        .or_else(|| {
                            sizes.iter().find(|known| {
                                !digits.is_empty()
                                    && known.strip_prefix(digits.as_str()).is_some_and(|unit| {
                                        !unit.starts_with(|c: char| c.is_ascii_digit())
                                    })
                            })
                        })
                        .map(|known| format!("; did you mean {known}?"))
                        .unwrap_or_default();
                    bail!(
                        "{size} is not a hugepage size on {architecture} ({}){hint}",
                        sizes.join(", ")
                    );
                }
                shape.hugepages = Some(size.to_owned());
            }
            _ => bail!("unknown option {option:?} (dedicated, hugepages=SIZE)"),
        }
    }
    Ok(shape)
}

fn synthetic_vmi(shape: &Shape) -> anyhow::Result<VmiFacts> {
    let mut memory = json!({"guest": shape.guest.to_string()});
    if let Some(page_size) = &shape.hugepages {
        memory["hugepages"] = json!({"pageSize": page_size});
    }
    let vmi = json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "plan"},
        "spec": {"domain": {
            "cpu": {"cores": shape.vcpus, "dedicatedCpuPlacement": shape.dedicated},
            "memory": memory,
        }},
    });
    Ok(VmiFacts::from_value(&vmi)?)
}

fn human_bytes(bytes: i128) -> String {
    const GIB: i128 = 1 << 30;
    let tenths = bytes * 10 / GIB;
    if tenths % 10 == 0 {
        format!("{}Gi", tenths / 10)
    } else {
        format!("{}.{}Gi", tenths / 10, tenths % 10)
    }
}
