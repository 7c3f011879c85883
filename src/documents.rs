//! Reading Kubernetes-style documents: JSON, or YAML with one or several
//! `---` documents, from a file or standard input, as JSON values. The CLI
//! verbs, the server's VMI directory and the tests all read files this way.
//! YAML aliases expand within [`Expansion::for_text`]: a document of a few
//! KB cannot stand for gigabytes.
//! And the one reader of a policy file ([`PolicyFile`]), for `serve`,
//! `policy check` and every verb that takes `--policy`.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::sizing::policy::ValidPolicy;
use crate::sizing::yaml::{self, Expansion};

/// Reads a JSON or YAML file (`-` is standard input) into JSON values, one
/// per YAML document.
///
/// # Errors
/// Unreadable file or a document that is neither JSON nor YAML, naming the
/// file and the position.
pub fn read_documents(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
        text
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    parse_documents(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Parses JSON, or YAML (possibly several `---` documents), into values.
///
/// # Errors
/// The parser's message with line and column, or YAML whose aliases expand
/// past [`Expansion::for_text`] (naming the bound).
pub fn parse_documents(text: &str) -> anyhow::Result<Vec<Value>> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let value: Value = serde_json::from_str(text).context("invalid JSON")?;
        return Ok(vec![value]);
    }
    let documents: Vec<Value> =
        yaml::documents(text, Expansion::for_text(text)).context("invalid YAML")?;
    Ok(documents
        .into_iter()
        .filter(|value| !value.is_null())
        .collect())
}

/// Reads exactly one document.
///
/// # Errors
/// As [`read_documents`], or when the file holds no or several documents.
pub fn read_document(path: &Path) -> anyhow::Result<Value> {
    let mut documents = read_documents(path)?;
    match documents.len() {
        1 => Ok(documents.remove(0)),
        0 => bail!("{}: empty document", path.display()),
        n => bail!("{}: expected one document, found {n}", path.display()),
    }
}

/// A policy file.
#[derive(Debug, Clone)]
pub struct PolicyFile {
    /// Where it is.
    pub path: PathBuf,
}

impl PolicyFile {
    /// The policy at `path`.
    #[must_use]
    pub fn new(path: &Path) -> PolicyFile {
        PolicyFile {
            path: path.to_owned(),
        }
    }

    /// Its text.
    ///
    /// # Errors
    /// Unreadable, naming the file.
    pub fn read(&self) -> anyhow::Result<String> {
        std::fs::read_to_string(&self.path)
            .with_context(|| format!("reading policy {}", self.path.display()))
    }

    /// The policy in `text` (read from this file).
    ///
    /// # Errors
    /// Every problem with its field path, naming the file.
    pub fn parse(&self, text: &str) -> anyhow::Result<ValidPolicy> {
        ValidPolicy::from_yaml(text)
            .map_err(|errors| anyhow::anyhow!("invalid policy {}:\n{errors}", self.path.display()))
    }

    /// Reads and parses it.
    ///
    /// # Errors
    /// As [`PolicyFile::read`] and [`PolicyFile::parse`].
    pub fn load(&self) -> anyhow::Result<ValidPolicy> {
        self.parse(&self.read()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_aliases_expand_within_the_bound() {
        // A KubeVirt CR whose one 64 KiB string is named 17 times: 1,088
        // KiB of strings from 64 KiB of text, past the 1 MiB a small
        // document may expand to.
        let long = "x".repeat(64 * 1024);
        let text = format!(
            "apiVersion: kubevirt.io/v1\nkind: KubeVirt\nmetadata: {{name: &n {long}}}\n\
             spec: {{configuration: {{developerConfiguration: {{featureGates: [{}]}}}}}}\n",
            vec!["*n"; 16].join(", ")
        );
        const { assert!(17 * 64 * 1024 > yaml::MAX_POLICY_STRING_BYTES) };
        let error = format!("{:#}", parse_documents(&text).unwrap_err());
        assert!(
            error
                .contains("expands past 1048576 bytes of strings once its aliases are written out"),
            "{error}"
        );
        // Named 8 times, it is read.
        let within = text.replace(
            &format!("[{}]", vec!["*n"; 16].join(", ")),
            "[*n, *n, *n, *n, *n, *n, *n]",
        );
        assert_eq!(parse_documents(&within).expect("within the bound").len(), 1);
    }
}
