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

#[test]
fn a_man_page_per_subcommand_renders_with_every_option_and_make_install_places_them() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("prefix");
    let out = Command::new("make")
        .args(["-s", "--no-print-directory", "install-files"])
        .arg(format!("BIN={}", env!("CARGO_BIN_EXE_sitecar")))
        .arg(format!("PREFIX={}", prefix.display()))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(prefix.join("bin/sitecar").is_file());
    assert!(prefix.join("share/bash-completion/completions/sitecar").is_file());
    assert!(prefix.join("share/zsh/site-functions/_sitecar").is_file());
    assert!(prefix.join("share/fish/vendor_completions.d/sitecar.fish").is_file());
    let man1 = prefix.join("share/man/man1");
    let render = |page: &str| {
        let out =
            Command::new("man").arg("-l").arg(man1.join(page)).env("MANWIDTH", "120").env("MAN_KEEP_FORMATTING", "0").output().unwrap();
        assert!(out.status.success(), "{page}: {}", String::from_utf8_lossy(&out.stderr));
        // Bold and underline come as overstrikes (c BS c, _ BS c): keep the letters.
        let mut text = String::new();
        for c in String::from_utf8_lossy(&out.stdout).chars() {
            if c == '\u{8}' {
                text.pop();
            } else {
                text.push(c);
            }
        }
        text
    };
    // The main page names the subcommands' pages, and each one exists.
    let main = render("sitecar.1");
    for sub in ["validate", "up", "proxy", "status", "logs", "reload", "down", "restart", "export", "import", "completions", "man"] {
        assert!(man1.join(format!("sitecar-{sub}.1")).is_file(), "sitecar-{sub}.1");
        assert!(main.contains(&format!("sitecar-{sub}(1)")), "{sub} in:\n{main}");
    }
    assert!(!man1.join("sitecar-demo-app.1").exists(), "hidden commands get no page");
    let up = render("sitecar-up.1");
    for option in ["--listen", "--admin", "--watch", "--setting", "--parameters", "--main-port"] {
        assert!(up.contains(option), "{option} in sitecar-up(1):\n{up}");
    }
    let export = render("sitecar-export.1");
    assert!(export.contains("--output") && export.contains("--name") && export.contains("--dir"), "{export}");
}
