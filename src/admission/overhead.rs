//! Which overhead figures on a launcher Pod virt-sizer may trust.
//!
//! KubeVirt copies every annotation of a VMI onto its launcher Pod, and a
//! VMI's annotations are its owner's to write. So a Pod annotation whose
//! value the VMI carries too is the VM owner's copy, whatever its key:
//!
//! * `kubevirt.io/memory-overhead-bytes` counts only when it is not the
//!   VMI's value (KubeVirt overwrites the copy when it reports its
//!   overhead; when it does not, the copy is all there is);
//! * `virt-sizer.io/kubevirt-memory-overhead-bytes`, the figure virt-sizer
//!   keeps when it rewrites KubeVirt's, counts only on a reinvocation:
//!   the Pod carries virt-sizer's `virt-sizer.io/decision`, not a copy of
//!   the VMI's. Even then it counts only if sizing around it gives the
//!   overhead the Pod reports now, which is the pair virt-sizer wrote
//!   (`launcher.rs` checks that).
//!
//! docs/decisions.md lists every annotation and label read, and who can
//! write it.

use super::*;
use crate::sizing::vmi::VmiFacts;

/// The overhead figures of a launcher Pod that are not a VMI's copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PodOverhead<'p> {
    /// [`KUBEVIRT_OVERHEAD_ANNOTATION`], unless the VMI carries the same
    /// value.
    pub(crate) kubevirt: Option<&'p str>,
    /// [`ORIGINAL_OVERHEAD_ANNOTATION`] on a reinvocation: the Pod carries
    /// a [`DECISION_ANNOTATION`] that is not the VMI's, and the figure is
    /// not the VMI's either.
    pub(crate) kept_original: Option<&'p str>,
}

impl<'p> PodOverhead<'p> {
    /// Reads them from `pod`, against what its VMI carries.
    pub(crate) fn read(pod: &'p Value, vmi: &VmiFacts) -> PodOverhead<'p> {
        // A string annotation of the Pod that is not a copy of the VMI's.
        let own = |key: &str| {
            at(pod, &["metadata", "annotations", key])
                .and_then(Value::as_str)
                .filter(|value| vmi.annotations.get(key).map(String::as_str) != Some(*value))
        };
        let reinvoked = own(DECISION_ANNOTATION).is_some();
        PodOverhead {
            kubevirt: own(KUBEVIRT_OVERHEAD_ANNOTATION),
            kept_original: own(ORIGINAL_OVERHEAD_ANNOTATION).filter(|_| reinvoked),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(annotations: &Value) -> Value {
        json!({"metadata": {"annotations": annotations}})
    }

    fn vmi(annotations: &[(&str, &str)]) -> VmiFacts {
        VmiFacts {
            annotations: annotations
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
            ..VmiFacts::default()
        }
    }

    #[test]
    fn what_the_vmi_carries_is_never_trusted_on_the_pod() {
        let pod = pod(&json!({
            DECISION_ANNOTATION: "profile=dev,policy=sha256:x",
            ORIGINAL_OVERHEAD_ANNOTATION: "0",
            KUBEVIRT_OVERHEAD_ANNOTATION: "0",
        }));
        let copied = vmi(&[
            (DECISION_ANNOTATION, "profile=dev,policy=sha256:x"),
            (ORIGINAL_OVERHEAD_ANNOTATION, "0"),
            (KUBEVIRT_OVERHEAD_ANNOTATION, "0"),
        ]);
        assert_eq!(
            PodOverhead::read(&pod, &copied),
            PodOverhead {
                kubevirt: None,
                kept_original: None
            }
        );
        // A decision copied from the VMI is no reinvocation, so a kept
        // figure the VMI does not carry counts no more.
        let decision_only = vmi(&[(DECISION_ANNOTATION, "profile=dev,policy=sha256:x")]);
        assert_eq!(
            PodOverhead::read(&pod, &decision_only),
            PodOverhead {
                kubevirt: Some("0"),
                kept_original: None
            }
        );
    }

    #[test]
    fn a_kept_figure_counts_only_under_virt_sizers_own_decision() {
        let annotations = json!({
            ORIGINAL_OVERHEAD_ANNOTATION: "339738624",
            KUBEVIRT_OVERHEAD_ANNOTATION: "576716488",
        });
        let plain = vmi(&[]);
        // First pass: no decision, the kept figure is someone else's.
        assert_eq!(
            PodOverhead::read(&pod(&annotations), &plain),
            PodOverhead {
                kubevirt: Some("576716488"),
                kept_original: None
            }
        );
        let mut reinvoked = annotations;
        reinvoked[DECISION_ANNOTATION] = json!("profile=dev,policy=sha256:x");
        assert_eq!(
            PodOverhead::read(&pod(&reinvoked), &plain),
            PodOverhead {
                kubevirt: Some("576716488"),
                kept_original: Some("339738624")
            }
        );
        // Another value on the VMI does not make the Pod's a copy.
        let other = vmi(&[(DECISION_ANNOTATION, "profile=batch,policy=sha256:y")]);
        assert_eq!(
            PodOverhead::read(&pod(&reinvoked), &other).kept_original,
            Some("339738624")
        );
    }
}
