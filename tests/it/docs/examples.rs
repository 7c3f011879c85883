//! The documents' shell sessions, run against the built binary.
//!
//! Every fenced block whose info string is `console` is a session: a line
//! `$ COMMAND` (continued on the next line while it ends in `\`) is run by
//! `bash` from the repository root with this build's `virt-sizer` first on
//! the `PATH`, and the lines up to the next `$ ` are what it must print
//! (standard output and standard error together, as a terminal shows them).
//! The commands of one block share one shell, so `echo $?` sees the status
//! of the command before it. In the shown output:
//!
//! * `[..]` within a line stands for any text on that line;
//! * a line that is only `…` stands for any number of lines, none included.
//!
//! Each block gets a scratch directory of its own: `/tmp/` in a command
//! stands for `SCRATCH/tmp/` and `~` (the `HOME`) for `SCRATCH/home`, and the
//! scratch paths are written back as `/tmp/` and `~` in what is compared, so
//! a session that writes to `/tmp` shows the paths a reader sees. The
//! environment holds only `PATH` and `HOME`, so a `VIRT_SIZER_*` or
//! `RUST_LOG` of the machine running the tests cannot change an answer.
//!
//! A session against a running server (`curl` to `serve`) is fenced as
//! `shell-session` instead, which GitHub renders the same; a `$ virt-sizer`
//! line in any other block is refused, so an example cannot slip out of
//! the check by its fence.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::documents;

/// The info string of a checked session.
const CHECKED: &str = "console";
/// The info string of a session that needs a running server: not run.
const NOT_RUN: &str = "shell-session";
/// Stands for any text within one line of shown output.
const ANY_TEXT: &str = "[..]";
/// A line of shown output that stands for any number of lines.
const ANY_LINES: &str = "…";
/// Printed by the generated script after each command.
const STEP_END: &str = "\u{1}virt-sizer-docs-step-end\u{1}";

/// One `$ COMMAND` and the output shown under it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    /// Line number of the `$ ` line.
    line: usize,
    /// The command, continuation lines joined with newlines.
    command: String,
    /// The shown output, one entry per line.
    expected: Vec<String>,
}

/// One fenced block: its info string, first line number and lines.
#[derive(Debug)]
struct Fence<'a> {
    info: &'a str,
    line: usize,
    body: Vec<&'a str>,
}

/// The fenced blocks of a Markdown text.
fn fences(text: &str) -> Vec<Fence<'_>> {
    let mut found = Vec::new();
    let mut open: Option<Fence<'_>> = None;
    for (index, line) in text.lines().enumerate() {
        match open.take() {
            None => {
                if let Some(info) = line.strip_prefix("```") {
                    open = Some(Fence {
                        info: info.trim(),
                        line: index + 1,
                        body: Vec::new(),
                    });
                }
            }
            Some(mut fence) => {
                if line.trim_end() == "```" {
                    found.push(fence);
                } else {
                    fence.body.push(line);
                    open = Some(fence);
                }
            }
        }
    }
    found
}

/// The steps of a checked block.
fn steps(fence: &Fence<'_>) -> Result<Vec<Step>, String> {
    let mut steps: Vec<Step> = Vec::new();
    let mut continued = false;
    for (offset, line) in fence.body.iter().enumerate() {
        let number = fence.line + 1 + offset;
        if continued {
            let step = steps.last_mut().expect("a continued command has a step");
            step.command.push('\n');
            step.command.push_str(line);
            continued = line.ends_with('\\');
        } else if let Some(command) = line.strip_prefix("$ ") {
            steps.push(Step {
                line: number,
                command: command.to_owned(),
                expected: Vec::new(),
            });
            continued = line.ends_with('\\');
        } else if let Some(step) = steps.last_mut() {
            step.expected.push((*line).to_owned());
        } else {
            return Err(format!(
                "line {number}: output before the first `$ ` command"
            ));
        }
    }
    if continued {
        return Err(format!(
            "line {}: the block ends inside a continued command",
            fence.line
        ));
    }
    if steps.is_empty() {
        return Err(format!(
            "line {}: a `{CHECKED}` block with no `$ ` command",
            fence.line
        ));
    }
    Ok(steps)
}

/// Whether one line of output matches one shown line (`[..]` is any text).
fn line_matches(shown: &str, actual: &str) -> bool {
    let mut parts = shown.split(ANY_TEXT);
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = actual.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Whether the output's lines match the shown lines (a line `…` is any
/// number of lines).
fn lines_match(shown: &[String], actual: &[&str]) -> bool {
    match shown.split_first() {
        None => actual.is_empty(),
        Some((first, rest)) if first.trim() == ANY_LINES => {
            (0..=actual.len()).any(|skip| lines_match(rest, &actual[skip..]))
        }
        Some((first, rest)) => actual
            .split_first()
            .is_some_and(|(line, tail)| line_matches(first, line) && lines_match(rest, tail)),
    }
}

/// The bash script that runs a block's steps in one shell, each followed by
/// [`STEP_END`], keeping each command's exit status for the next one.
fn script(steps: &[Step], scratch: &Path) -> String {
    let tmp = format!("{}/tmp/", scratch.display());
    let mut script = String::new();
    for step in steps {
        let command = step.command.replace("/tmp/", &tmp);
        script.push_str(&format!(
            "{{\n{command}\n}} 2>&1\nstatus=$?\nprintf '%s\\n' '{STEP_END}'\n(exit $status)\n"
        ));
    }
    script
}

/// Runs a block's steps; returns each one's output, scratch paths written
/// back as a reader sees them.
fn run(steps: &[Step]) -> Result<Vec<String>, String> {
    let scratch = tempfile::tempdir().map_err(|error| format!("scratch directory: {error}"))?;
    let home = scratch.path().join("home");
    for dir in [scratch.path().join("tmp"), home.clone()] {
        std::fs::create_dir(&dir).map_err(|error| format!("{}: {error}", dir.display()))?;
    }
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_virt-sizer"));
    let bin_dir = binary.parent().expect("the binary is in a directory");
    let path = std::env::join_paths(std::iter::once(bin_dir.to_owned()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .map_err(|error| format!("PATH: {error}"))?;
    let output = Command::new("bash")
        .arg("--noprofile")
        .arg("--norc")
        .arg("-c")
        .arg(script(steps, scratch.path()))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_clear()
        .env("PATH", path)
        .env("HOME", &home)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("bash: {error}"))?;
    let text = String::from_utf8_lossy(&output.stdout)
        .replace(&format!("{}/tmp/", scratch.path().display()), "/tmp/")
        .replace(&home.display().to_string(), "~");
    let mut outputs: Vec<String> = text
        .split(&format!("{STEP_END}\n"))
        .map(str::to_owned)
        .collect();
    // What follows the last step's end: nothing.
    let trailing = outputs.pop().unwrap_or_default();
    if outputs.len() != steps.len() || !trailing.is_empty() {
        return Err(format!(
            "the session did not run to its end ({} of {} commands; stderr: {})",
            outputs.len(),
            steps.len(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(outputs)
}

/// What running every checked session of the documents gave.
#[derive(Debug, Default)]
struct Sessions {
    /// Blocks run.
    blocks: usize,
    /// Everything the commands printed.
    printed: String,
    /// Mismatches and unusable blocks, each with its file and line.
    problems: Vec<String>,
}

/// Runs every checked block of every document.
fn run_all() -> Sessions {
    let mut sessions = Sessions::default();
    for file in documents() {
        check_document(&file, &mut sessions);
    }
    sessions
}

/// Runs every checked block of one document into `sessions`.
fn check_document(file: &Path, sessions: &mut Sessions) {
    let text = std::fs::read_to_string(file).expect("readable");
    let name = file
        .strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(file)
        .display()
        .to_string();
    let problems = &mut sessions.problems;
    for fence in fences(&text) {
        if fence.info != CHECKED {
            if fence.info != NOT_RUN {
                for (offset, line) in fence.body.iter().enumerate() {
                    if line.starts_with("$ virt-sizer") {
                        problems.push(format!(
                            "{name}:{}: `$ virt-sizer` in a ```{} block: fence it as ```{CHECKED} so it is checked",
                            fence.line + 1 + offset,
                            fence.info
                        ));
                    }
                }
            }
            continue;
        }
        sessions.blocks += 1;
        let steps = match steps(&fence) {
            Ok(steps) => steps,
            Err(problem) => {
                problems.push(format!("{name}: {problem}"));
                continue;
            }
        };
        let outputs = match run(&steps) {
            Ok(outputs) => outputs,
            Err(problem) => {
                problems.push(format!("{name}:{}: {problem}", fence.line));
                continue;
            }
        };
        for (step, output) in steps.iter().zip(&outputs) {
            sessions.printed.push_str(output);
            let actual: Vec<&str> = output.lines().collect();
            if !lines_match(&step.expected, &actual) {
                problems.push(format!(
                    "{name}:{}: $ {}\n--- shown\n{}\n--- printed\n{}",
                    step.line,
                    step.command,
                    step.expected.join("\n"),
                    actual.join("\n")
                ));
            }
        }
    }
}

#[test]
fn every_console_session_prints_what_the_documents_show() {
    let sessions = run_all();
    assert!(
        sessions.blocks > 0,
        "no `{CHECKED}` block found: the check checks nothing"
    );
    assert!(
        sessions.problems.is_empty(),
        "{}",
        sessions.problems.join("\n\n")
    );
}

/// The `sha256:` digests in `text`, whole or shortened (at least 8 hex
/// digits), as written.
fn digests(text: &str) -> Vec<&str> {
    text.match_indices("sha256:")
        .map(|(at, prefix)| {
            let hex = &text[at + prefix.len()..];
            let end = hex
                .find(|c: char| !c.is_ascii_hexdigit())
                .unwrap_or(hex.len());
            &hex[..end]
        })
        .filter(|hex| hex.len() >= 8)
        .collect()
}

/// A digest shown anywhere in the documents (a log line, a `/readyz` body,
/// a decision annotation) is one a checked session printed: policy digests
/// come from the binary, not from memory.
#[test]
fn every_digest_shown_is_one_a_checked_session_prints() {
    let sessions = run_all();
    let printed: Vec<&str> = digests(&sessions.printed)
        .into_iter()
        .filter(|hex| hex.len() == 64)
        .collect();
    assert!(!printed.is_empty(), "no checked session prints a digest");
    let mut unknown = Vec::new();
    for file in documents() {
        let text = std::fs::read_to_string(&file).expect("readable");
        for (index, line) in text.lines().enumerate() {
            for digest in digests(line) {
                if !printed.iter().any(|known| known.starts_with(digest)) {
                    unknown.push(format!("{}:{}: sha256:{digest}", file.display(), index + 1));
                }
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "digests no checked session prints:\n{}",
        unknown.join("\n")
    );
}

#[test]
fn a_placeholder_stands_for_text_within_one_line() {
    assert!(line_matches("a [..] c", "a b c"));
    assert!(line_matches("a [..] c", "a  c"));
    assert!(line_matches("[..]", ""));
    assert!(line_matches("x[..]y[..]z", "x1y2y3z"));
    assert!(!line_matches("a [..] c", "a b d"));
    assert!(!line_matches("a [..] c", "b a b c"));
    assert!(
        !line_matches("abc[..]bcd", "abcd"),
        "the parts may not overlap"
    );
    assert!(line_matches("plain", "plain"));
    assert!(!line_matches("plain", "plain "));
}

#[test]
fn an_ellipsis_line_stands_for_any_number_of_lines() {
    let shown = |lines: &[&str]| {
        lines
            .iter()
            .map(|line| (*line).to_owned())
            .collect::<Vec<_>>()
    };
    assert!(lines_match(&shown(&["a", "…", "d"]), &["a", "b", "c", "d"]));
    assert!(lines_match(&shown(&["a", "…", "d"]), &["a", "d"]));
    assert!(lines_match(&shown(&["  …"]), &[]));
    assert!(!lines_match(&shown(&["a", "…", "d"]), &["a", "b", "c"]));
    assert!(
        !lines_match(&shown(&["a"]), &["a", "b"]),
        "no line left unshown"
    );
    assert!(!lines_match(&shown(&[]), &["a"]));
}

#[test]
fn a_session_is_split_into_commands_and_their_output() {
    let text = "text\n```console\n$ virt-sizer a \\\n    --b\none\n$ echo $?\n0\n```\n";
    let fence = &fences(text)[0];
    assert_eq!(fence.info, CHECKED);
    let steps = steps(fence).expect("well formed");
    assert_eq!(
        steps,
        vec![
            Step {
                line: 3,
                command: "virt-sizer a \\\n    --b".to_owned(),
                expected: vec!["one".to_owned()],
            },
            Step {
                line: 6,
                command: "echo $?".to_owned(),
                expected: vec!["0".to_owned()],
            },
        ]
    );
    assert!(steps_of("```console\nno command\n```\n").is_err());
    assert!(steps_of("```console\n$ a \\\n```\n").is_err());
}

fn steps_of(text: &str) -> Result<Vec<Step>, String> {
    steps(&fences(text)[0])
}

#[test]
fn a_session_sees_the_exit_status_and_a_scratch_tmp_of_its_own() {
    let steps = steps_of(
        "```console\n$ virt-sizer test /tmp/none\n$ echo $?\n$ echo hi > /tmp/f; cat /tmp/f; echo /tmp/f ~\n```\n",
    )
    .expect("well formed");
    let outputs = run(&steps).expect("runs");
    assert_eq!(outputs.len(), 3);
    assert!(
        outputs[0].contains("/tmp/none") && !outputs[0].contains("/home"),
        "{}",
        outputs[0]
    );
    // `test` with nothing to run is an error: exit 2 (docs/cli.md).
    assert_eq!(outputs[1], "2\n");
    assert_eq!(outputs[2], "hi\n/tmp/f ~\n");
}
