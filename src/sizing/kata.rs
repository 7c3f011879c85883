//! kata (in progress)
