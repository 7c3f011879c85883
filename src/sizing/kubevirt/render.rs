//! virt-controller's resource renderer (`renderresources.go`) for the
//! launcher Pod's `compute` container: its resource lists and the `With…`
//! options [`super::size_launcher`] applies, one method each, in the order
//! `VMIResourcePredicates` (`template.go`) applies them, plus the hard rules
//! that live inside those options (no overcommit for hugepages and
//! dedicated CPUs, whole hugepages, the memory-hotplug floor).

use std::collections::BTreeMap;

use super::overhead::{self, memory_overhead};
use super::{
    AUTO_MEMORY_LIMITS_RATIO_LABEL, DEFAULT_AUTO_MEMORY_LIMITS_RATIO, LauncherInput, ceil_div,
    cpu_request_for_ratio, is_managed_resource, overflow,
};
use crate::sizing::error::SizingError;
use crate::sizing::explain::{Explanation, ResourceField, Section, Terms};
use crate::sizing::gofloat;
use crate::sizing::policy::{GuestOverhead, Profile, Release};
use crate::sizing::quantity::{Format, Quantity};
use crate::sizing::vmi::{EMULATOR_THREAD_EVEN_PARITY_ANNOTATION, VmiFacts};
use crate::terms;

/// virt-controller's `ResourceRenderer` (`renderresources.go`) for one
/// launcher Pod: the four resource lists its `With…` options write, plus
/// what virt-sizer says about each step.
///
/// `vm_*` start as the VMI's `requests`/`limits` (after virt-api's
/// defaults); options that adjust the VMI's own values write there, and
/// those win the merge over the `calculated_*` values.
pub(super) struct Renderer<'a> {
    input: &'a LauncherInput<'a>,
    vmi: &'a VmiFacts,
    profile: &'a Profile,
    vm_requests: BTreeMap<String, Quantity>,
    vm_limits: BTreeMap<String, Quantity>,
    calculated_requests: BTreeMap<String, Quantity>,
    calculated_limits: BTreeMap<String, Quantity>,
    explanation: Explanation,
    warnings: Vec<String>,
}

/// The renderer's merged lists (managed resources only) and its notes.
pub(super) struct Rendered {
    pub(super) requests: BTreeMap<String, Quantity>,
    pub(super) limits: BTreeMap<String, Quantity>,
    pub(super) explanation: Explanation,
    pub(super) warnings: Vec<String>,
}

impl<'a> Renderer<'a> {
    /// `newResourceRenderer`: the VMI's lists, nothing calculated yet.
    pub(super) fn new(input: &'a LauncherInput<'a>) -> Self {
        Self {
            input,
            vmi: input.vmi,
            profile: input.profile,
            vm_requests: input.vmi.requests.clone(),
            vm_limits: input.vmi.limits.clone(),
            calculated_requests: BTreeMap::new(),
            calculated_limits: BTreeMap::new(),
            explanation: Explanation::new(),
            warnings: Vec::new(),
        }
    }

    /// `WithMemoryRequests` (v1.7+; on v1.5 virt-api wrote the same value
    /// into the VMI, where the page-table term then reads it): a memory
    /// limit without a request becomes the request; otherwise, with no
    /// request, the guest memory (overcommitted by the profile's
    /// `memoryOvercommitPercent`, see [`Renderer::guest_memory_request`]).
    ///
    /// Returns how the memory base came about, for the explanation.
    pub(super) fn with_memory_requests(&mut self) -> Result<Terms, SizingError> {
        let has_request = self
            .vm_requests
            .get("memory")
            .is_some_and(|request| !request.is_zero());
        let limit = self.vm_limits.get("memory").copied();
        if let Some(limit) = limit.filter(|limit| !limit.is_zero())
            && !has_request
        {
            self.vm_requests.insert("memory".into(), limit);
            return Ok(terms!["limit ", limit]);
        }
        if let Some(request) = self.vm_requests.get("memory") {
            return Ok(terms!["VMI request ", request]);
        }
        match self.vmi.guest.filter(|guest| guest.value() > 0) {
            Some(guest) => self.guest_memory_request(guest),
            None => Ok(Terms::new()),
        }
    }

    /// The memory request of a VMI that gave only its guest memory:
    /// `guest × 100 / memoryOvercommitPercent`, truncating, in the guest
    /// quantity's format. Hugepages and dedicated-CPU VMIs are never
    /// overcommitted (a hard rule: KubeVirt v1.7–v1.9 overcommits hugepages
    /// into a non page-multiple and the Pod is rejected; PR #18880).
    pub(super) fn guest_memory_request(&mut self, guest: Quantity) -> Result<Terms, SizingError> {
        let percent = self.profile.memory_overcommit_percent;
        let hugepages = self.vmi.has_hugepages();
        if percent == 100 || hugepages || self.vmi.dedicated_cpus {
            self.vm_requests.insert("memory".into(), guest);
            if percent != 100 {
                self.warnings.push(format!(
                    "memoryOvercommitPercent {percent} not applied: {} memory is never overcommitted",
                    if hugepages { "hugepages" } else { "dedicated-CPU" }
                ));
            }
            return Ok(terms!["guest ", guest]);
        }
        let value = guest
            .value()
            .checked_mul(100)
            .map(|scaled| scaled / i128::from(percent))
            .and_then(|bytes| i64::try_from(bytes).ok())
            .ok_or_else(|| overflow("memory overcommit"))?;
        let overcommitted = Quantity::from_int(value, guest.format());
        self.vm_requests.insert("memory".into(), overcommitted);
        Ok(terms![
            "guest ",
            guest,
            " × 100/",
            percent,
            " = ",
            overcommitted
        ])
    }

    /// `WithCPUPinning` (dedicated CPUs): CPU request = limit = vCPUs +
    /// IOThreads (+ the emulator thread), and the memory limit is the memory
    /// request as it stands, so that with the overhead added to both the Pod
    /// is Guaranteed QoS.
    pub(super) fn with_cpu_pinning(&mut self) -> Result<(), SizingError> {
        let vcpus = self.vmi.cpu.vcpus();
        let io_threads = u64::from(self.vmi.io_thread_supplemental);
        if vcpus != 0 {
            let total = cpu_count(vcpus + io_threads)?;
            self.vm_limits.insert("cpu".into(), total);
            self.vm_requests.insert("cpu".into(), total);
        } else {
            let io = cpu_count(io_threads)?;
            for list in [&mut self.vm_limits, &mut self.vm_requests] {
                if let Some(cpu) = list.get_mut("cpu") {
                    *cpu = cpu.checked_add(io).ok_or_else(|| overflow("cpu"))?;
                }
            }
        }
        let mut cpu_note = terms![vcpus, " dedicated vCPU"];
        if io_threads > 0 {
            cpu_note.push(terms![" + ", io_threads, " IOThread"]);
        }
        if self.vmi.isolate_emulator_thread {
            let emulator = self.add_emulator_thread(io_threads)?;
            cpu_note.push(terms![" + ", emulator, " emulator thread"]);
        }
        if let Some(cpu) = self.vm_requests.get("cpu") {
            self.explanation.formula(
                ResourceField::new(Section::Requests, "cpu"),
                terms!["cpu request = limit ", cpu],
                ": ",
                terms![cpu_note, " (dedicated CPUs are never overcommitted)"],
            );
        }
        if let Some(memory) = self.vm_requests.get("memory").copied() {
            self.vm_limits.insert("memory".into(), memory);
        }
        Ok(())
    }

    /// `isolateEmulatorThread`: one more CPU on the limit and the request,
    /// or two when the VMI carries
    /// [`EMULATOR_THREAD_EVEN_PARITY_ANNOTATION`] and the count (with the
    /// IOThreads) is even. Returns the CPUs added.
    pub(super) fn add_emulator_thread(&mut self, io_threads: u64) -> Result<u64, SizingError> {
        let limit_cpus = self.vm_limits.get("cpu").map_or(0, Quantity::value);
        let even_parity = self
            .vmi
            .annotations
            .contains_key(EMULATOR_THREAD_EVEN_PARITY_ANNOTATION);
        let emulator = if even_parity && (limit_cpus + i128::from(io_threads)) % 2 == 0 {
            2
        } else {
            1
        };
        let emulator_cpus = cpu_count(emulator)?;
        let limit_cpu = self
            .vm_limits
            .get("cpu")
            .copied()
            .unwrap_or(Quantity::zero(Format::BinarySi));
        self.vm_limits.insert(
            "cpu".into(),
            limit_cpu
                .checked_add(emulator_cpus)
                .ok_or_else(|| overflow("cpu"))?,
        );
        if let Some(cpu) = self.vm_requests.get_mut("cpu") {
            *cpu = cpu
                .checked_add(emulator_cpus)
                .ok_or_else(|| overflow("cpu"))?;
        }
        Ok(emulator)
    }

    /// `WithoutDedicatedCPU`: the calculated CPU request is (vCPUs +
    /// IOThreads, v1.6+) / `cpuAllocationRatio` ([`cpu_request_for_ratio`]);
    /// a VMI request beats it in the merge. With KubeVirt's automatic CPU
    /// limits in force and no VMI limit, the limit is the whole count.
    pub(super) fn without_dedicated_cpu(&mut self) -> Result<(), SizingError> {
        let (vmi, release) = (self.vmi, self.input.settings.release);
        let io_threads = u64::from(vmi.io_thread_supplemental);
        let total = if release == Release::V1_5 {
            vmi.cpu.vcpus()
        } else {
            vmi.cpu.vcpus() + io_threads
        };
        let ratio = self.profile.cpu_allocation_ratio;
        if total == 0 || ratio == 0 {
            return Ok(());
        }
        let computed = cpu_request_for_ratio(total, ratio)?;
        self.calculated_requests.insert("cpu".into(), computed);
        let with_cpu_limits = self.input.auto_limits.cpu && !vmi.limits.contains_key("cpu");
        if with_cpu_limits {
            self.calculated_limits.insert(
                "cpu".into(),
                cpu_count(total)?.with_format(Format::DecimalSi),
            );
        }
        let vcpu_terms = if io_threads > 0 && release != Release::V1_5 {
            terms!["(", vmi.cpu.vcpus(), " vCPU + ", io_threads, " IOThread)"]
        } else {
            terms![total, " vCPU"]
        };
        let cpu_request = ResourceField::new(Section::Requests, "cpu");
        match self.vm_requests.get("cpu") {
            Some(explicit) => self.explanation.formula(
                cpu_request,
                terms![
                    "cpu request ",
                    explicit,
                    ": the VMI's own request beats ",
                    vcpu_terms,
                    " / cpuAllocationRatio ",
                    ratio
                ],
                " = ",
                terms![computed],
            ),
            None => self.explanation.formula(
                cpu_request,
                terms!["cpu request ", computed],
                " = ",
                terms![vcpu_terms, " / cpuAllocationRatio ", ratio],
            ),
        }
        if with_cpu_limits {
            self.explanation.formula(
                ResourceField::new(Section::Limits, "cpu"),
                terms!["cpu limit ", total],
                ": ",
                terms![
                    "KubeVirt's automatic CPU limit (namespace quota or autoCPULimitNamespaceLabelSelector)"
                ],
            );
        }
        Ok(())
    }

    /// `CalculateMemoryOverhead` under the profile: KubeVirt's overhead
    /// (the Pod's reported figure, or [`memory_overhead`] computed for the
    /// release line) with the profile's `overheadRatio`, then its
    /// `overheadMargin`. Returns KubeVirt's overhead and the Pod's.
    pub(super) fn calculate_memory_overhead(
        &mut self,
    ) -> Result<(Quantity, Quantity), SizingError> {
        let LauncherInput {
            vmi,
            settings,
            profile,
            ..
        } = *self.input;
        let (kubevirt_overhead, overhead_terms) = match self.input.reported_overhead {
            Some(reported) => overhead::overhead_from_reported(
                reported,
                vmi,
                settings,
                profile,
                &mut self.warnings,
            )?,
            None => {
                // The VMI's `requests.memory` as KubeVirt sees it: on 1.5
                // virt-api wrote WithMemoryRequests' value into the VMI.
                let page_table_request = match settings.release {
                    Release::V1_5 => self.vm_requests.get("memory").copied(),
                    Release::V1_9 | Release::Main => vmi.explicit_memory_request,
                };
                let computed = memory_overhead(
                    vmi,
                    settings,
                    profile.overhead_ratio.value,
                    page_table_request,
                )?;
                let terms = Terms::joined(
                    computed
                        .terms
                        .into_iter()
                        .filter(|(_, amount)| !amount.is_zero())
                        .map(|(label, amount)| terms![label, " ", amount]),
                    " + ",
                );
                (computed.total, terms)
            }
        };
        let overhead = kubevirt_overhead
            .checked_add(profile.overhead_margin)
            .ok_or_else(|| overflow("memory overhead"))?;
        self.explanation.note(if profile.overhead_margin.is_zero() {
            terms![
                "overhead ",
                overhead,
                " = ",
                overhead_terms,
                " (KubeVirt ",
                settings.release.as_str(),
                ")"
            ]
        } else {
            terms![
                "overhead ",
                overhead,
                " = ",
                kubevirt_overhead,
                " [",
                overhead_terms,
                "] + overheadMargin ",
                profile.overhead_margin
            ]
        });
        Ok((kubevirt_overhead, overhead))
    }

    /// `WithHugePages`: the guest memory goes into `hugepages-<pageSize>`
    /// (request = limit, see [`Renderer::hugepages_amount`]); `memory`
    /// holds only the overhead plus whatever request or limit exceeds the
    /// guest memory. The overhead is always requested (KubeVirt ignores
    /// `overcommitGuestOverhead` here, and so does the profile).
    pub(super) fn with_hugepages(
        &mut self,
        page_size: &str,
        overhead: Quantity,
        memory_base: Terms,
    ) -> Result<(), SizingError> {
        let resource = format!("hugepages-{page_size}");
        let amount = self.hugepages_amount(page_size, &resource)?;
        self.calculated_requests.insert(resource.clone(), amount);
        self.calculated_limits.insert(resource.clone(), amount);
        self.explanation.formula(
            ResourceField::new(Section::Requests, &resource),
            terms![resource.clone(), " request = limit ", amount],
            ": ",
            terms![
                memory_base,
                " in ",
                page_size.to_owned(),
                " pages (never overcommitted)"
            ],
        );

        let guest = self.vmi.guest;
        let request_above_guest = above_guest(self.vm_requests.get("memory").copied(), guest)?;
        let limit_above_guest = above_guest(self.vm_limits.get("memory").copied(), guest)?;
        let request = request_above_guest
            .checked_add(overhead)
            .ok_or_else(|| overflow("memory"))?;
        self.vm_requests.insert("memory".into(), request);
        self.explanation.formula(
            ResourceField::new(Section::Requests, "memory"),
            terms!["memory request ", request],
            " = ",
            terms![
                "overhead ",
                overhead,
                (!request_above_guest.is_zero())
                    .then(|| terms![" + request above guest ", request_above_guest]),
                " (guest memory is in hugepages)"
            ],
        );
        if self.vm_limits.contains_key("memory") {
            let limit = limit_above_guest
                .checked_add(overhead)
                .ok_or_else(|| overflow("memory"))?;
            self.vm_limits.insert("memory".into(), limit);
        }
        if self.omits_overhead() {
            self.warnings.push(
                "guestOverhead Omit ignored: hugepage VMIs always request their overhead".into(),
            );
        }
        Ok(())
    }

    /// The hugepage amount: the memory request as it stands, at most the
    /// guest memory, rounded up to whole pages with a warning (a hard rule:
    /// Kubernetes rejects a hugepage quantity that is not a page multiple).
    pub(super) fn hugepages_amount(
        &mut self,
        page_size: &str,
        resource: &str,
    ) -> Result<Quantity, SizingError> {
        let page_size_quantity =
            Quantity::parse(page_size).map_err(|source| SizingError::InvalidQuantity {
                field: "spec.domain.memory.hugepages.pageSize".into(),
                source,
            })?;
        let mut amount = self
            .vm_requests
            .get("memory")
            .copied()
            .unwrap_or(Quantity::zero(Format::DecimalSi));
        if let Some(guest) = self.vmi.guest
            && amount.value() > guest.value()
        {
            amount = guest;
        }
        let page_bytes = page_size_quantity.value();
        if page_bytes <= 0 {
            return Err(SizingError::InvalidField {
                field: "spec.domain.memory.hugepages.pageSize".into(),
                message: format!("page size {page_size} is not positive"),
            });
        }
        let amount_bytes = amount.value();
        if amount_bytes % page_bytes == 0 {
            return Ok(amount);
        }
        let pages = ceil_div(amount_bytes, page_bytes);
        let rounded = i64::try_from(pages * page_bytes).map_err(|_| overflow("hugepages"))?;
        let rounded = Quantity::from_int(rounded, Format::BinarySi);
        self.warnings.push(format!(
            "{resource} {amount} is not a whole number of {page_size} pages: rounded up to {rounded}"
        ));
        Ok(rounded)
    }

    /// `WithMemoryOverhead`: the overhead goes on the memory request
    /// (unless the VMI's `overcommitGuestOverhead` or the profile's
    /// `guestOverhead: Omit` leaves it off, never for dedicated CPUs) and on
    /// a memory limit if there is one; the request keeps the
    /// [hotplug floor](Renderer::hotplug_floor).
    pub(super) fn with_memory_overhead(
        &mut self,
        overhead: Quantity,
        memory_base: Terms,
    ) -> Result<(), SizingError> {
        let dedicated = self.vmi.dedicated_cpus;
        let base = self
            .vm_requests
            .get("memory")
            .copied()
            .unwrap_or(Quantity::zero(Format::DecimalSi));
        let omit = self.omits_overhead() && !dedicated;
        if self.omits_overhead() && dedicated {
            self.warnings.push(
                "guestOverhead Omit ignored: dedicated-CPU VMIs keep Guaranteed QoS and request their overhead"
                    .into(),
            );
        }
        let request = if omit {
            base
        } else {
            base.checked_add(overhead)
                .ok_or_else(|| overflow("memory"))?
        };
        let request = self.hotplug_floor(request, overhead)?;
        self.vm_requests.insert("memory".into(), request);
        let formula = if omit && request == base {
            terms![
                memory_base,
                " (overhead not requested: ",
                if self.vmi.overcommit_guest_overhead {
                    "VMI overcommitGuestOverhead"
                } else {
                    "profile guestOverhead Omit"
                },
                ")"
            ]
        } else {
            terms![memory_base, " + overhead ", overhead]
        };
        self.explanation.formula(
            ResourceField::new(Section::Requests, "memory"),
            terms!["memory request ", request],
            " = ",
            formula,
        );
        if let Some(limit) = self.vm_limits.get("memory").copied() {
            let limit = limit
                .checked_add(overhead)
                .ok_or_else(|| overflow("memory"))?;
            self.vm_limits.insert("memory".into(), limit);
            self.explanation.formula(
                ResourceField::new(Section::Limits, "memory"),
                terms!["memory limit ", limit],
                " = ",
                terms!["limit + overhead ", overhead],
            );
        }
        Ok(())
    }

    /// The memory-hotplug floor, a hard rule: virt-handler's `hotplugMemory`
    /// (`pkg/virt-handler/migration-target.go`) refuses a hotplug unless the
    /// Pod's request ≥ VMI `requests.memory` + overhead. A profile's
    /// `guestOverhead: Omit` never goes below it; a VMI that asks for
    /// `overcommitGuestOverhead` itself is sized as KubeVirt sizes it, below
    /// the floor, and told what that costs.
    pub(super) fn hotplug_floor(
        &mut self,
        request: Quantity,
        overhead: Quantity,
    ) -> Result<Quantity, SizingError> {
        let Some(explicit) = self.vmi.explicit_memory_request else {
            return Ok(request);
        };
        let floor = explicit
            .checked_add(overhead)
            .ok_or_else(|| overflow("memory"))?;
        if request >= floor {
            return Ok(request);
        }
        if self.vmi.overcommit_guest_overhead {
            self.warnings.push(format!(
                "KubeVirt will refuse memory hotplug for this VM: the VMI asks for overcommitGuestOverhead, so the memory request {request} is below the VMI request {explicit} + overhead {overhead} = {floor} that virt-handler's hotplug check needs"
            ));
            return Ok(request);
        }
        self.warnings.push(format!(
            "memory request raised from {request} to {floor}: memory hotplug needs the VMI request {explicit} + overhead {overhead}"
        ));
        Ok(floor)
    }

    /// `WithAutoMemoryLimits` (a ResourceQuota sets `limits.memory` and the
    /// VMI has no memory limit): limit = `int64(float64(request) × ratio)`,
    /// the ratio from the namespace label
    /// [`AUTO_MEMORY_LIMITS_RATIO_LABEL`] (a float ≥ 1.0) or 2.
    pub(super) fn with_auto_memory_limits(&mut self) -> Result<(), SizingError> {
        let label = self
            .input
            .namespace_labels
            .get(AUTO_MEMORY_LIMITS_RATIO_LABEL);
        let ratio_text = label
            .filter(|text| gofloat::parse(text).is_some_and(|ratio| ratio >= 1.0))
            .map_or(DEFAULT_AUTO_MEMORY_LIMITS_RATIO, String::as_str);
        let ratio =
            gofloat::parse(ratio_text).ok_or_else(|| overflow("auto memory limit ratio"))?;
        let request = self
            .vm_requests
            .get("memory")
            .copied()
            .unwrap_or(Quantity::zero(Format::DecimalSi));
        let request_bytes = u64::try_from(request.value()).map_err(|_| overflow("memory"))?;
        let value = gofloat::mul_trunc(request_bytes, ratio)
            .ok_or_else(|| overflow("auto memory limit"))?;
        let limit = Quantity::from_int(value, request.format());
        self.calculated_limits.insert("memory".into(), limit);
        self.explanation.formula(
            ResourceField::new(Section::Limits, "memory"),
            terms!["memory limit ", limit],
            " = ",
            terms![
                "request × ",
                ratio_text.to_owned(),
                " (KubeVirt's automatic memory limit)"
            ],
        );
        Ok(())
    }

    /// The merge (`Requests()` / `Limits()`): the calculated lists
    /// overlaid by the VMI's (and pinned or overhead-adjusted) values, kept
    /// to the resources virt-sizer manages.
    pub(super) fn merge(self) -> Rendered {
        let mut requests = self.calculated_requests;
        requests.extend(self.vm_requests);
        let mut limits = self.calculated_limits;
        limits.extend(self.vm_limits);
        requests.retain(|name, _| is_managed_resource(name));
        limits.retain(|name, _| is_managed_resource(name));
        Rendered {
            requests,
            limits,
            explanation: self.explanation,
            warnings: self.warnings,
        }
    }

    /// Whether the overhead would be left off the request: the VMI's
    /// `overcommitGuestOverhead` or the profile's `guestOverhead: Omit`.
    pub(super) fn omits_overhead(&self) -> bool {
        self.vmi.overcommit_guest_overhead || self.profile.guest_overhead == GuestOverhead::Omit
    }
}

/// How far `memory` exceeds the guest memory (zero when it does not, or
/// when either is unknown).
fn above_guest(memory: Option<Quantity>, guest: Option<Quantity>) -> Result<Quantity, SizingError> {
    match (memory, guest) {
        (Some(memory), Some(guest)) if memory.value() > guest.value() => diff(memory, guest),
        _ => Ok(Quantity::zero(Format::DecimalSi)),
    }
}

fn diff(minuend: Quantity, subtrahend: Quantity) -> Result<Quantity, SizingError> {
    minuend
        .checked_sub(subtrahend)
        .ok_or_else(|| overflow("memory"))
}

fn cpu_count(count: u64) -> Result<Quantity, SizingError> {
    i64::try_from(count)
        .map(|count| Quantity::from_int(count, Format::BinarySi))
        .map_err(|_| overflow("cpu"))
}
