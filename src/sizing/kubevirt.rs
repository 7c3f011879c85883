//! kubevirt (in progress)
