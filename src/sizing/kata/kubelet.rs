//! What the kubelet hands Kata for a Pod: the containers in the order it
//! starts them, each container's CFS quota and memory limit, and the Pod's
//! limits, requests and cgroup under Kubernetes' rules for init containers
//! and sidecars.
//!
//! Sources: `AggregateContainerLimits` / `AggregateContainerRequests` in
//! `k8s.io/component-helpers/resource/helpers.go` (`PodLimits`,
//! `PodRequests`); `milliCPUToQuota` and `calculateSandboxResources` in
//! `pkg/kubelet/kuberuntime` (the CRI sandbox annotations Kata's static
//! modes read, computed with `PodLimits(ExcludeOverhead)`); and
//! `ResourceConfigForPod` in `pkg/kubelet/cm/helpers_linux.go` (the Pod
//! cgroup's memory limit).

use std::collections::BTreeMap;

use super::ContainerList;
use crate::sizing::quantity::Quantity;

/// The kubelet's CFS period in µs (`quotaPeriod`, 100 ms).
pub(super) const CFS_PERIOD_US: u64 = 100_000;
/// The kubelet's smallest CFS quota in µs (`minQuotaPeriod`, 1 ms): a CPU
/// limit below 10m gets the quota of 10m.
pub(super) const MIN_CFS_QUOTA_US: i128 = 1_000;
/// Millicores in one CPU.
const MILLIS_PER_CPU: i128 = 1_000;

/// The kubelet's `milliCPUToQuota(milliCPU, 100000)`: no quota (0) for no
/// limit, else `milliCPU × period / 1000`, at least 1 ms. Saturates at
/// `i64::MAX` where Go's `int64` product would overflow.
pub(super) fn cfs_quota(milli_cpu: i128) -> i64 {
    if milli_cpu <= 0 {
        return 0;
    }
    let quota = milli_cpu
        .saturating_mul(i128::from(CFS_PERIOD_US))
        .div_euclid(MILLIS_PER_CPU)
        .max(MIN_CFS_QUOTA_US);
    i64::try_from(quota).unwrap_or(i64::MAX)
}

/// What a container is to the kubelet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// An init container: runs to completion before the next one starts.
    Init,
    /// An init container with `restartPolicy: Always`: starts in the init
    /// sequence and keeps running.
    Sidecar,
    /// A container of `spec.containers`.
    App,
}

impl Role {
    /// How the explanation names it.
    pub(super) fn noun(self) -> &'static str {
        match self {
            Role::Init => "init container",
            Role::Sidecar => "sidecar",
            Role::App => "container",
        }
    }
}

/// One container, with the requests and limits it has once the webhook's
/// changes apply (negative values dropped).
#[derive(Debug, Clone)]
pub(super) struct PodContainer {
    /// Its name.
    pub(super) name: String,
    /// Its role.
    pub(super) role: Role,
    /// The list it is in.
    pub(super) list: ContainerList,
    /// Its index in that list.
    pub(super) index: usize,
    /// `resources.limits`.
    pub(super) limits: BTreeMap<String, Quantity>,
    /// `resources.requests`, a missing one defaulted to the limit, as the
    /// API server does.
    pub(super) requests: BTreeMap<String, Quantity>,
}

impl PodContainer {
    /// The CFS quota the kubelet gives the container (µs per
    /// [`CFS_PERIOD_US`]; 0 without a CPU limit).
    pub(super) fn cpu_quota(&self) -> i64 {
        cfs_quota(self.limits.get("cpu").map_or(0, Quantity::milli_value))
    }

    /// The memory limit in bytes the kubelet gives the container
    /// (`Value()`; 0 without one).
    pub(super) fn memory_bytes(&self) -> i128 {
        self.limits.get("memory").map_or(0, Quantity::value)
    }

    /// Σ of its `hugepages-*` limits in bytes.
    pub(super) fn hugepages_bytes(&self) -> i128 {
        self.limits
            .iter()
            .filter(|(name, _)| name.starts_with("hugepages-"))
            .fold(0, |sum, (_, q)| sum.saturating_add(q.value()))
    }
}

/// A resource summed over the Pod by Kubernetes' rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PodTotal {
    /// The Pod's figure in nanounits: max(Σ app containers + Σ sidecars,
    /// the largest init container + the sidecars started before it).
    pub(super) nanos: i128,
    /// Whether every container, as `PodLimits`' `ContainerFn` sees it (an
    /// init container with the sidecars before it, a sidecar with those
    /// before it and itself), has a nonzero amount: `ResourceConfigForPod`
    /// then sets the Pod cgroup's limit.
    pub(super) every_container_set: bool,
}

/// `AggregateContainerLimits` (or `AggregateContainerRequests`) for the
/// amount `amount` gives each container, in nanounits: app containers and
/// sidecars add up; each init container needs itself plus the sidecars
/// already running; the Pod takes the larger. `containers` are in start
/// order (init containers first).
pub(super) fn pod_total(
    containers: &[PodContainer],
    amount: impl Fn(&PodContainer) -> i128,
) -> PodTotal {
    let mut running = 0_i128;
    let mut sidecars = 0_i128;
    let mut init_peak = 0_i128;
    let mut every_container_set = true;
    for container in containers {
        let own = amount(container);
        let seen = match container.role {
            Role::App => {
                running = running.saturating_add(own);
                own
            }
            Role::Sidecar => {
                running = running.saturating_add(own);
                sidecars = sidecars.saturating_add(own);
                init_peak = init_peak.max(sidecars);
                sidecars
            }
            Role::Init => {
                let needs = own.saturating_add(sidecars);
                init_peak = init_peak.max(needs);
                needs
            }
        };
        every_container_set &= seen != 0;
    }
    PodTotal {
        nanos: running.max(init_peak),
        every_container_set,
    }
}

/// The nanounits of `resource` in `map` (0 if absent).
pub(super) fn nanos_of(map: &BTreeMap<String, Quantity>, resource: &str) -> i128 {
    map.get(resource).map_or(0, Quantity::nanos)
}

/// The Pod's limits as the CRI sandbox annotations carry them to Kata's
/// static modes (`calculateSandboxResources`: `PodLimits` without the
/// overhead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SandboxLimits {
    /// The CFS quota of the Pod's CPU limit (`io.kubernetes.cri.sandbox-cpu-quota`).
    pub(super) cpu_quota: i64,
    /// The Pod's memory limit in bytes (`io.kubernetes.cri.sandbox-memory`).
    pub(super) memory_bytes: i128,
}

impl SandboxLimits {
    /// From the containers in start order.
    pub(super) fn of(containers: &[PodContainer]) -> SandboxLimits {
        let cpu = pod_total(containers, |c| nanos_of(&c.limits, "cpu"));
        let memory = pod_total(containers, |c| nanos_of(&c.limits, "memory"));
        let cpu = Quantity::from_nanos(cpu.nanos, crate::sizing::Format::DecimalSi);
        let memory = Quantity::from_nanos(memory.nanos, crate::sizing::Format::BinarySi);
        SandboxLimits {
            cpu_quota: cfs_quota(cpu.milli_value()),
            memory_bytes: memory.value(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(name: &str, role: Role, memory: &str) -> PodContainer {
        let mut limits = BTreeMap::new();
        if !memory.is_empty() {
            limits.insert("memory".to_owned(), Quantity::parse(memory).unwrap());
        }
        PodContainer {
            name: name.to_owned(),
            role,
            list: if role == Role::App {
                ContainerList::Containers
            } else {
                ContainerList::InitContainers
            },
            index: 0,
            requests: limits.clone(),
            limits,
        }
    }

    fn mib(total: PodTotal) -> i128 {
        total.nanos / 1_000_000_000 / (1 << 20)
    }

    /// Init 1 (100), a sidecar (50),
    /// init 2 (200), app (300). Init 2 needs 200 + the sidecar's 50 = 250;
    /// app + sidecar = 350; the Pod takes max(350, 100, 50, 250) = 350.
    #[test]
    fn init_containers_take_the_max_and_sidecars_add() {
        let pod = [
            container("init-1", Role::Init, "100Mi"),
            container("sidecar", Role::Sidecar, "50Mi"),
            container("init-2", Role::Init, "200Mi"),
            container("app", Role::App, "300Mi"),
        ];
        let total = pod_total(&pod, |c| nanos_of(&c.limits, "memory"));
        assert_eq!(mib(total), 300 + 50);
        assert!(total.every_container_set);

        // An init container larger than the rest decides: 1000 + 50.
        let pod = [
            container("sidecar", Role::Sidecar, "50Mi"),
            container("big-init", Role::Init, "1000Mi"),
            container("app", Role::App, "300Mi"),
        ];
        assert_eq!(
            mib(pod_total(&pod, |c| nanos_of(&c.limits, "memory"))),
            1000 + 50
        );
    }

    /// `ResourceConfigForPod`: an init container without a limit and no
    /// sidecar before it leaves the Pod cgroup unlimited; after a sidecar
    /// with a limit it counts as limited.
    #[test]
    fn limits_are_declared_as_container_fn_sees_them() {
        let unlimited_init = [
            container("init", Role::Init, ""),
            container("app", Role::App, "1Gi"),
        ];
        assert!(!pod_total(&unlimited_init, |c| nanos_of(&c.limits, "memory")).every_container_set);
        let after_sidecar = [
            container("sidecar", Role::Sidecar, "64Mi"),
            container("init", Role::Init, ""),
            container("app", Role::App, "1Gi"),
        ];
        assert!(pod_total(&after_sidecar, |c| nanos_of(&c.limits, "memory")).every_container_set);
    }

    /// `milliCPUToQuota`: 1500m → 150000 µs; below 10m the 1 ms floor.
    #[test]
    fn quota_has_a_floor_of_ten_millicores() {
        assert_eq!(cfs_quota(1500), 1500 * 100);
        assert_eq!(cfs_quota(10), 1_000);
        assert_eq!(cfs_quota(1), 1_000);
        assert_eq!(cfs_quota(0), 0);
    }
}
