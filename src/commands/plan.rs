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
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use serde_json::json;

use crate::cli::PlanArgs;
use crate::commands::load_policy_over;
use crate::sizing::Quantity;
use crate::sizing::kubevirt::{self, AutoLimits, LauncherInput};
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
        .map(|text| parse_shape(text).with_context(|| format!("--vm {text}")))
        .collect::<anyhow::Result<Vec<_>>>()?;

    let mut out = String::new();
    let _ = writeln!(
        out,
        "node: cpu {}, memory {}    policy {}",
        node["cpu"], node["memory"], policy.digest
    );
    let _ = writeln!(
        out,
        "{:<14} {:<18} {:>12} {:>14} {:>14} {:>5}  {:<9} guest memory held",
        "profile", "vm", "cpu request", "memory request", "hugepages", "fit", "limit by"
    );
    let empty_labels = BTreeMap::new();
    for profile in policy.profiles.values() {
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
            let _ = writeln!(
                out,
                "{:<14} {:<18} {:>12} {:>14} {:>14} {:>5}  {:<9} {} ({}% of node memory)",
                profile.name,
                shape.text,
                cpu.map_or_else(|| "-".to_owned(), |cpu| cpu.to_string()),
                memory.map_or_else(|| "-".to_owned(), |memory| memory.to_string()),
                hugepages.map_or_else(|| "-".to_owned(), |(_, amount)| amount.to_string()),
                fit,
                limited_by,
                human_bytes(held),
                if node_memory > 0 {
                    held * 100 / node_memory
                } else {
                    0
                },
            );
        }
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
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

/// `4x16Gi`, `4x16Gi,dedicated`, `8x32Gi,hugepages=1Gi`.
fn parse_shape(text: &str) -> anyhow::Result<Shape> {
    let mut parts = text.split(',');
    let size = parts.next().unwrap_or_default();
    let (vcpus, guest) = size
        .split_once(['x', 'X'])
        .context("expected VCPUSxMEMORY, e.g. 4x16Gi")?;
    let vcpus: u32 = vcpus.trim().parse().context("vCPU count")?;
    if vcpus == 0 {
        bail!("vCPU count must be at least 1");
    }
    let guest = Quantity::parse(guest.trim())?;
    if guest.is_negative() || guest.is_zero() {
        bail!("memory must be positive");
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
            Some(("hugepages", size)) => shape.hugepages = Some(size.to_owned()),
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
