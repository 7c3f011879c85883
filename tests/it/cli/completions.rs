//! `virt-sizer completions`.

use super::*;

/// `completions <shell>` prints a script that knows every verb and flag;
/// an unknown shell is a usage error.
#[test]
fn completions_print_a_script_for_each_shell() {
    let output = virt_sizer(&["completions", "bash"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let script = stdout(&output);
    assert!(script.contains("_virt__sizer()"), "{script}");
    assert!(script.contains("complete -F _virt__sizer"), "{script}");
    for word in [
        "serve",
        "review",
        "completions",
        "--probe-listen",
        "--namespace-labels",
    ] {
        assert!(script.contains(word), "bash completion lacks {word}");
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let output = virt_sizer(&["completions", shell]);
        assert!(output.status.success(), "{shell}: {}", stderr(&output));
        assert!(stdout(&output).contains("probe-listen"), "{shell}");
    }
    let output = virt_sizer(&["completions", "tcsh"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("invalid value 'tcsh'"),
        "{}",
        stderr(&output)
    );
}
