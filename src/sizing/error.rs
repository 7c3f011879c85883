//! Errors of the sizing core. Every variant names the field and the value.

use super::quantity::QuantityError;

/// Why an object could not be sized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizingError {
    /// A quantity in the object did not parse.
    #[error("{field}: {source}")]
    InvalidQuantity {
        /// Path of the field, e.g. `spec.domain.memory.guest`.
        field: String,
        /// What was wrong with it.
        #[source]
        source: QuantityError,
    },
    /// A field had the wrong type or an impossible value.
    #[error("{field}: {message}")]
    InvalidField {
        /// Path of the field.
        field: String,
        /// What was wrong with it.
        message: String,
    },
    /// A value is negative where only non-negative values make sense.
    #[error("{field}: negative value {value}")]
    Negative {
        /// Path of the field.
        field: String,
        /// The value as given.
        value: String,
    },
    /// Arithmetic left the range of a Kubernetes quantity.
    #[error("{what}: arithmetic overflow")]
    Overflow {
        /// What was being computed.
        what: String,
    },
    /// The launcher Pod's VirtualMachineInstance is not known.
    #[error("virtual machine instance {namespace}/{name} not found")]
    VmiNotFound {
        /// Namespace of the VMI.
        namespace: String,
        /// Name of the VMI.
        name: String,
    },
    /// The launcher Pod's VirtualMachineInstance could not be looked up.
    #[error("virtual machine instance {namespace}/{name} unavailable: {reason}")]
    VmiUnavailable {
        /// Namespace of the VMI.
        namespace: String,
        /// Name of the VMI.
        name: String,
        /// Why (timeout, API error).
        reason: String,
    },
    /// The labels of the Pod's Namespace (which the policy's rules read)
    /// could not be learned.
    #[error("labels of namespace {namespace} unknown: {reason}")]
    NamespaceUnavailable {
        /// The namespace.
        namespace: String,
        /// Why (not in the cache and the GET failed, timed out, …).
        reason: String,
    },
    /// The object under review is larger than this server keeps of one
    /// object (the message names the bound): answered per `onError`
    /// rather than read.
    #[error("{0}")]
    ObjectTooLarge(String),
    /// A hard rule would be broken: a bug, refused rather than admitted.
    #[error("invariant violated: {0}")]
    Invariant(String),
}

impl SizingError {
    /// A short, stable label for the `outcome` metric.
    #[must_use]
    pub fn metric_label(&self) -> &'static str {
        match self {
            SizingError::InvalidQuantity { .. } => "invalid_quantity",
            SizingError::InvalidField { .. } => "invalid_field",
            SizingError::Negative { .. } => "negative",
            SizingError::Overflow { .. } => "overflow",
            SizingError::VmiNotFound { .. } => "vmi_not_found",
            SizingError::VmiUnavailable { .. } => "vmi_unavailable",
            SizingError::NamespaceUnavailable { .. } => "namespace_unavailable",
            SizingError::ObjectTooLarge(_) => "object_too_large",
            SizingError::Invariant(_) => "invariant",
        }
    }
}
