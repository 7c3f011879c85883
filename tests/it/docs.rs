//! The README and `docs/`: the README fits on a page, every relative link
//! (and its `#anchor`) resolves, and nothing points at a document or a path
//! that is not in the repository.

use std::path::{Path, PathBuf};

use crate::support::repo;

/// The Markdown files an operator reads.
fn documents() -> Vec<PathBuf> {
    let mut files = vec![
        repo("README.md"),
        repo("CHANGELOG.md"),
        repo("manifests/README.md"),
        repo("certs/README.md"),
    ];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo("docs"))
        .expect("docs/")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// GitHub's anchor for a heading.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown file's headings (outside code blocks).
fn anchors(text: &str) -> Vec<String> {
    let mut fenced = false;
    text.lines()
        .filter(|line| {
            if line.starts_with("```") {
                fenced = !fenced;
            }
            !fenced && line.starts_with('#')
        })
        .map(|line| slug(line.trim_start_matches('#')))
        .collect()
}

/// `(target, line number)` of every `](target)` outside code blocks.
fn links(text: &str) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    let mut fenced = false;
    for (index, line) in text.lines().enumerate() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        if fenced {
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("](") {
            let after = &rest[start + 2..];
            let Some(end) = after.find(')') else { break };
            found.push((after[..end].to_owned(), index + 1));
            rest = &after[end..];
        }
    }
    found
}

#[test]
fn readme_fits_on_a_page_and_links_the_docs() {
    let readme = std::fs::read_to_string(repo("README.md")).expect("README.md");
    let lines = readme.lines().count();
    // One page, plus the performance targets' table (issue 13).
    assert!(lines <= 325, "README.md has {lines} lines");
    for doc in [
        "policy",
        "formulas",
        "ci-cases",
        "performance",
        "reliability",
        "cluster",
        "development",
    ] {
        assert!(
            readme.contains(&format!("(docs/{doc}.md")),
            "README.md does not link docs/{doc}.md"
        );
    }
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let mut broken = Vec::new();
    for file in documents() {
        let text = std::fs::read_to_string(&file).expect("readable");
        let dir = file.parent().expect("a directory");
        for (target, line) in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let linked: PathBuf = if path.is_empty() {
                file.clone()
            } else {
                dir.join(path)
            };
            let at = format!("{}:{line}: {target}", file.display());
            if !linked.exists() {
                broken.push(format!("{at}: no such file"));
                continue;
            }
            if !anchor.is_empty() && linked.extension().is_some_and(|ext| ext == "md") {
                let linked_text = std::fs::read_to_string(&linked).expect("readable");
                if !anchors(&linked_text).iter().any(|found| found == anchor) {
                    broken.push(format!("{at}: no heading #{anchor}"));
                }
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn nothing_points_outside_the_repository() {
    let mut found = Vec::new();
    for file in documents() {
        let text = std::fs::read_to_string(&file).expect("readable");
        for (index, line) in text.lines().enumerate() {
            for needle in [
                "SPEC",
                "reference §",
                "/work/",
                "performance issue",
                "target/debug/virt-sizer",
            ] {
                if line.contains(needle) {
                    found.push(format!(
                        "{}:{}: {needle}: {line}",
                        file.display(),
                        index + 1
                    ));
                }
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
    assert!(Path::new(&repo("LICENSE")).is_file());
}
