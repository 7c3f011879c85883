//! The benches' few options (`--name value` after `cargo bench … --`).
//! Included by `benches/load.rs` and `benches/apiserver.rs` (`#[path]`).

use std::str::FromStr;

/// The value after `--name`, parsed; `default` when absent or unparsable.
pub(crate) fn option<T: FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .find(|pair| pair[0] == name)
        .and_then(|pair| pair[1].parse().ok())
        .unwrap_or(default)
}
