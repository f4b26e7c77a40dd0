//! Shell completions and the man page, generated from the clap definitions, loaded by the real
//! shells (bash, zsh, fish) and rendered by groff.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::process::Command;

fn sitecar(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sitecar")).args(args).output().unwrap();
    assert!(out.status.success(), "sitecar {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn shell(program: &str, script: &str) -> String {
    let out = Command::new(program).arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "{program}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn bash_completes_subcommands_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sitecar.bash");
    std::fs::write(&file, sitecar(&["completions", "bash"])).unwrap();
    let complete = |words: &str| {
        let n = words.split(' ').count() - 1;
        shell(
            "bash",
            &format!(
                r#"source {}; COMP_WORDS=({words}); COMP_CWORD={n}; _sitecar sitecar "${{COMP_WORDS[$COMP_CWORD]}}" ""; echo "${{COMPREPLY[@]}}""#,
                file.display()
            ),
        )
    };
    let subcommands = complete("sitecar pro");
    assert_eq!(subcommands.trim(), "proxy");
    let flags = complete("sitecar proxy --ca");
    for f in ["--cache", "--cache-max-bytes", "--cache-max-object-bytes"] {
        assert!(flags.split_whitespace().any(|w| w == f), "{f} in {flags}");
    }
}

#[test]
fn fish_completes_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sitecar.fish");
    std::fs::write(&file, sitecar(&["completions", "fish"])).unwrap();
    let out = shell("fish", &format!("source {}; complete -C 'sitecar va'", file.display()));
    assert!(out.lines().any(|l| l.starts_with("validate")), "{out}");
}

#[test]
fn zsh_loads_the_completion_function() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("_sitecar"), sitecar(&["completions", "zsh"])).unwrap();
    let out = shell(
        "zsh",
        &format!(
            "fpath=({} $fpath); autoload -Uz compinit; compinit -u -d {}/zcompdump; autoload -Uz +X _sitecar; whence -w _sitecar",
            dir.path().display(),
            dir.path().display()
        ),
    );
    assert!(out.contains("_sitecar: function"), "{out}");
    let syntax = Command::new("zsh").arg("-n").arg(dir.path().join("_sitecar")).status().unwrap();
    assert!(syntax.success());
}

#[test]
fn man_page_renders_with_every_subcommand() {
    let page = sitecar(&["man"]);
    assert!(page.contains(".TH sitecar 1"), "{page}");
    let mut groff = Command::new("groff")
        .args(["-man", "-Tutf8"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(groff.stdin.as_mut().unwrap(), page.as_bytes()).unwrap();
    let out = groff.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    for sub in ["validate", "up", "proxy", "status", "logs", "completions"] {
        assert!(text.contains(sub), "{sub} in the rendered page");
    }
}
