//! The README and `docs/`: the README fits on a page, every relative link
//! (and its `#anchor`) resolves, nothing points at a document or a path
//! that is not in the repository, and every shell session they show prints
//! what the binary prints ([`examples`]).

use std::path::{Path, PathBuf};

use crate::support::repo;

mod examples;

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
    // One page, plus the performance targets' table.
    assert!(lines <= 325, "README.md has {lines} lines");
    for doc in [
        "policy",
        "formulas",
        "ci-cases",
        "performance",
        "reliability",
        "cluster",
        "development",
        "troubleshooting",
        "compatibility",
        "upgrade-and-rollback",
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
                // A section mark only ever pointed at a document the
                // repository does not hold.
                "§",
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

/// A figure's numbers and unit: `1.85-2.1×` is `([1.85, 2.1], "×")`, `+1.4 ms`
/// is `([1.4], "ms")`.
fn figure(text: &str) -> (Vec<f64>, String) {
    let text = text.trim().trim_start_matches('+');
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(text.len());
    let numbers = text[..end]
        .split('-')
        .map(|number| {
            number
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("{text:?}: {number:?} is not a number"))
        })
        .collect();
    (numbers, text[end..].trim().to_owned())
}

/// The README's performance targets table says which targets are missed,
/// and each verdict agrees with the row's own figures: the bound in the
/// target against the worst end of the measured range, in the same unit.
#[test]
fn the_readme_says_which_performance_targets_are_missed() {
    let readme = std::fs::read_to_string(repo("README.md")).expect("README.md");
    let mut lines = readme
        .lines()
        .skip_while(|line| !line.starts_with("| target |"));
    let header: Vec<&str> = lines
        .next()
        .expect("the README has a performance targets table")
        .split('|')
        .map(str::trim)
        .collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|cell| *cell == name)
            .unwrap_or_else(|| panic!("the targets table has no `{name}` column: {header:?}"))
    };
    let (target_at, after_at, met_at) = (column("target"), column("after"), column("met?"));
    let rows: Vec<Vec<&str>> = lines
        .skip(1)
        .take_while(|line| line.starts_with('|'))
        .map(|line| line.split('|').map(str::trim).collect())
        .collect();
    assert!(rows.len() >= 5, "{} targets", rows.len());
    for row in rows {
        let target = row[target_at];
        let (at_most, bound_text) = match (target.split_once('≤'), target.split_once('≥')) {
            (Some((_, bound)), None) => (true, bound),
            (None, Some((_, bound))) => (false, bound),
            _ => panic!("{target:?}: no single ≤ or ≥ bound"),
        };
        // The bound's unit is the word after its number, or the sign on it.
        let bound_text = bound_text.trim();
        let number_end = bound_text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(bound_text.len());
        let unit = bound_text[number_end..]
            .trim_start()
            .split([' ', '('])
            .next()
            .unwrap_or_default();
        let (bound, bound_unit) = figure(&format!("{}{unit}", &bound_text[..number_end]));
        let after = row[after_at];
        let measured = after
            .split("**")
            .nth(1)
            .unwrap_or_else(|| panic!("{target:?}: no figure in bold in {after:?}"));
        let (range, measured_unit) = figure(measured);
        assert_eq!(
            measured_unit, bound_unit,
            "{target:?}: {measured:?} is not in the bound's unit"
        );
        let met = if at_most {
            range.iter().all(|value| *value <= bound[0])
        } else {
            range.iter().all(|value| *value >= bound[0])
        };
        let verdict = row[met_at];
        let says_met = verdict == "met";
        let says_missed = verdict.starts_with("**missed**");
        assert!(
            says_met || says_missed,
            "{target:?}: `met?` is {verdict:?}, not `met` or `**missed**`"
        );
        assert_eq!(
            says_met,
            met,
            "{target:?}: {measured} against the bound {bound:?} {bound_unit} is {}, the table says {verdict:?}",
            if met { "met" } else { "missed" }
        );
    }
}

/// Every field the built-in policy spells out (`virt-sizer policy default`,
/// set or commented) has a row in the policy reference, or is named there by
/// its dotted path (`kata.pods`). The built-in policy's example names (a
/// binding plugin, profiles) and the label selector's own `matchLabels` are
/// not fields of the policy.
#[test]
fn every_field_of_the_built_in_policy_is_in_the_policy_reference() {
    const NAMES: &[&str] = &["mybinding", "default", "production", "dev", "batch"];
    const SELECTOR: &[&str] = &["matchLabels"];
    let reference = std::fs::read_to_string(repo("docs/policy.md")).expect("docs/policy.md");
    let mut missing = Vec::new();
    let mut fields = 0;
    for line in virt_sizer::sizing::policy::BUILTIN_POLICY_YAML.lines() {
        let text = line.trim_start_matches(|c: char| c == '#' || c.is_whitespace());
        let text = text.strip_prefix("- ").unwrap_or(text);
        let Some((key, rest)) = text.split_once(':') else {
            continue;
        };
        let is_field = key.starts_with(|c: char| c.is_ascii_lowercase())
            && key.chars().all(|c| c.is_ascii_alphanumeric())
            && (rest.is_empty() || rest.starts_with(' '));
        if !is_field || NAMES.contains(&key) || SELECTOR.contains(&key) {
            continue;
        }
        fields += 1;
        let row = format!("| `{key}` |");
        let dotted = format!(".{key}`");
        if !reference.contains(&row) && !reference.contains(&dotted) {
            missing.push(key.to_owned());
        }
    }
    assert!(
        fields >= 30,
        "only {fields} fields found in the built-in policy"
    );
    missing.dedup();
    assert!(
        missing.is_empty(),
        "docs/policy.md does not document: {missing:?}"
    );
}
