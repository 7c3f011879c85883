//! quantity (in progress)
