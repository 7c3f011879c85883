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
    /// Its reason, as the errors metric labels it.
    #[must_use]
    pub fn metric_label(&self) -> ErrorReason {
        match self {
            SizingError::InvalidQuantity { .. } => ErrorReason::InvalidQuantity,
            SizingError::InvalidField { .. } => ErrorReason::InvalidField,
            SizingError::Negative { .. } => ErrorReason::Negative,
            SizingError::Overflow { .. } => ErrorReason::Overflow,
            SizingError::VmiNotFound { .. } => ErrorReason::VmiNotFound,
            SizingError::VmiUnavailable { .. } => ErrorReason::VmiUnavailable,
            SizingError::NamespaceUnavailable { .. } => ErrorReason::NamespaceUnavailable,
            SizingError::ObjectTooLarge(_) => ErrorReason::ObjectTooLarge,
            SizingError::Invariant(_) => ErrorReason::Invariant,
        }
    }
}

/// Why a request was not answered with a decision, or could not be sized:
/// the closed set of `reason`s of `virt_sizer_admission_errors_total`, each
/// series exported from the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorReason {
    /// HTTP 400: not an AdmissionReview virt-sizer can read.
    BadRequest,
    /// HTTP 413: a body over the cap.
    TooLarge,
    /// HTTP 408: a body not received within the body timeout.
    BodyTimeout,
    /// HTTP 408: a body that gave way to waiting requests.
    BodyReclaimed,
    /// The VMI lookup failed or timed out.
    VmiLookup,
    /// The namespace's labels could not be looked up.
    NamespaceLookup,
    /// A policy check refused: as many were running as may.
    PolicyCheckBusy,
    /// A policy check past its time budget.
    PolicyCheckTimeout,
    /// [`SizingError::InvalidQuantity`].
    InvalidQuantity,
    /// [`SizingError::InvalidField`].
    InvalidField,
    /// [`SizingError::Negative`].
    Negative,
    /// [`SizingError::Overflow`].
    Overflow,
    /// [`SizingError::VmiNotFound`].
    VmiNotFound,
    /// [`SizingError::VmiUnavailable`].
    VmiUnavailable,
    /// [`SizingError::NamespaceUnavailable`].
    NamespaceUnavailable,
    /// [`SizingError::ObjectTooLarge`].
    ObjectTooLarge,
    /// [`SizingError::Invariant`].
    Invariant,
}

crate::sizing::spelling::spelled!(ErrorReason {
    "bad_request" => ErrorReason::BadRequest,
    "too_large" => ErrorReason::TooLarge,
    "body_timeout" => ErrorReason::BodyTimeout,
    "body_reclaimed" => ErrorReason::BodyReclaimed,
    "vmi_lookup" => ErrorReason::VmiLookup,
    "namespace_lookup" => ErrorReason::NamespaceLookup,
    "policy_check_busy" => ErrorReason::PolicyCheckBusy,
    "policy_check_timeout" => ErrorReason::PolicyCheckTimeout,
    "invalid_quantity" => ErrorReason::InvalidQuantity,
    "invalid_field" => ErrorReason::InvalidField,
    "negative" => ErrorReason::Negative,
    "overflow" => ErrorReason::Overflow,
    "vmi_not_found" => ErrorReason::VmiNotFound,
    "vmi_unavailable" => ErrorReason::VmiUnavailable,
    "namespace_unavailable" => ErrorReason::NamespaceUnavailable,
    "object_too_large" => ErrorReason::ObjectTooLarge,
    "invariant" => ErrorReason::Invariant,
});
