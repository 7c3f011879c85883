//! gofloat (in progress)
