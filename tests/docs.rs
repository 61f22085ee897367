//! The documentation cannot drift: every command in README.md and docs/ is
//! run as written against a lab of network namespaces, with the exit status
//! and the value its comment promises (`# exits 2`, `# 65536`), every output
//! sample is found in the real output in its order (digits and the kernel
//! version aside), every option of
//! `prtip --help` has an example in docs/USAGE.md, and docs/ARCHITECTURE.md
//! names every source file.
//!
//! Blocks preceded by `<!-- not run by tests: ... -->` are exempt and say why
//! (the benchmark commands need ../shared/lab).

mod common;

use common::{Lab, ONE_HOST_OPEN, stderr_of, temp_dir};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const ROUTER_MAC: &str = "02:00:0a:c8:00:02";

struct Block {
    file: String,
    /// The line of the opening fence.
    line: usize,
    lang: String,
    body: Vec<String>,
    /// The HTML comment on the line before the fence, if any.
    note: Option<String>,
}

fn blocks(file: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if let Some(lang) = lines[i].strip_prefix("```") {
            let note = i
                .checked_sub(1)
                .map(|j| lines[j].trim())
                .filter(|l| l.starts_with("<!--") && l.ends_with("-->"))
                .map(|l| l.trim_start_matches("<!--").trim_end_matches("-->").trim().to_string());
            let start = i;
            i += 1;
            let mut body = Vec::new();
            while i < lines.len() && !lines[i].starts_with("```") {
                body.push(lines[i].to_string());
                i += 1;
            }
            out.push(Block { file: file.display().to_string(), line: start + 1, lang: lang.to_string(), body, note });
        }
        i += 1;
    }
    out
}

fn doc_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// What a command's comment promises: the exit status (`# exits 2`), 0
/// unless it says, and the value it prints when the comment starts with one
/// (`# 65536`, `# completed|32768`, `# 10000: every port answered`,
/// `# exits 2: 4294901760 probes`).
struct Promise {
    status: i32,
    value: Option<String>,
}

fn promise(comment: &str) -> Promise {
    let (status, rest) = match comment.strip_prefix("exits ") {
        Some(r) => {
            let digits = r.split(|c: char| !c.is_ascii_digit()).next().unwrap_or("");
            (digits.parse().unwrap_or(0), r[digits.len()..].trim_start_matches(':').trim())
        }
        None => (0, comment),
    };
    let first = rest.split_whitespace().next().unwrap_or("").trim_end_matches(':');
    let is_value = !first.is_empty() && (first.chars().all(|c| c.is_ascii_digit()) || first.contains('|'));
    Promise { status, value: is_value.then(|| first.to_string()) }
}

/// One shell command per logical line: continuations joined, comments kept
/// apart. Returns each command with what its comment promises.
fn commands(block: &Block) -> Vec<(String, Promise)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in &block.body {
        let line = line.trim_end();
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            continue;
        }
        pending.push_str(line);
        let full = std::mem::take(&mut pending);
        let (cmd, comment) = match full.find("  #") {
            Some(at) => (full[..at].trim().to_string(), full[at..].trim_start().trim_start_matches('#').trim()),
            None => (full.trim().to_string(), ""),
        };
        if cmd.is_empty() || cmd.starts_with('#') {
            continue;
        }
        out.push((cmd, promise(comment)));
    }
    out
}

struct DocsLab {
    lab: Lab,
    work: tempfile::TempDir,
}

impl DocsLab {
    fn new() -> DocsLab {
        let mut lab = Lab::named("eth0", ROUTER_MAC);
        // The addresses the examples of --source-ip spread their probes over.
        for h in 11..=13 {
            lab.add_scanner_address(&format!("10.200.0.{h}/24"));
        }
        lab.listen(&ONE_HOST_OPEN);
        lab.listen(&[80]);
        lab.target_rules(
            "ip daddr 10.201.0.1 tcp dport 7000 drop\n\
             ip daddr 10.201.0.1 tcp dport 7001 reject with icmp type admin-prohibited\n\
             tcp dport 80 ip daddr & 0.0.0.15 != 0.0.0.0 reject with tcp reset",
        );
        let work = temp_dir();
        std::fs::write(work.path().join("targets.txt"), "10.201.0.1\n10.201.0.2  # a comment\n").unwrap();
        std::fs::write(work.path().join("excludes.txt"), "10.201.0.128/25\n10.201.0.7\n").unwrap();
        DocsLab { lab, work }
    }

    /// Runs `script` with sh in the scanner namespace, in the working
    /// directory, with prtip on the PATH and a /tmp of its own.
    fn sh(&self, script: &str) -> std::process::Output {
        let bin = Path::new(env!("CARGO_BIN_EXE_prtip")).parent().unwrap();
        // The clone may itself live under /tmp: the working directory and
        // prtip's directory are bound to /mnt and /srv (in this namespace
        // only) before /tmp is covered.
        let wrapped = format!(
            "mount --bind '{}' /mnt && mount --bind '{}' /srv && mount -t tmpfs prtip-docs /tmp && cd /mnt \
             && export PATH=/srv:\"$PATH\" && {script}",
            self.work.path().display(),
            bin.display()
        );
        Command::new("ip")
            .args(["netns", "exec", &self.lab.scan_ns, "unshare", "--mount", "--propagation", "private"])
            .args(["sh", "-c", &wrapped])
            .env_remove("RUST_LOG")
            .env("XDG_STATE_HOME", "/tmp/state")
            .output()
            .unwrap()
    }
}

/// Numbers vary from run to run, and with them the padding of columns;
/// words, fields and their order must not.
fn masked(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = '\n';
    for c in text.chars() {
        let c = if c.is_ascii_digit() { 'N' } else { c };
        if (c == 'N' && last == 'N') || (c == ' ' && last == ' ') {
            continue;
        }
        out.push(c);
        last = c;
    }
    out
}

/// The kernel line of `prtip doctor` names this machine's kernel, which a
/// sample cannot know: its version is compared as a word, whatever its form.
fn without_kernel_version(line: &str) -> String {
    let fields: Vec<&str> = line.split_whitespace().collect();
    match fields[..] {
        [status, "kernel", version, ..] if ["ok", "warn", "FAIL"].contains(&status) => {
            line.replacen(version, "VERSION", 1)
        }
        _ => line.to_string(),
    }
}

#[test]
fn every_command_and_sample_in_the_docs_runs_as_written() {
    let lab = DocsLab::new();
    let mut ran = 0;
    let mut values = 0;
    let mut usage_commands = Vec::new();
    for file in doc_files() {
        for block in blocks(&file) {
            if block.note.as_deref().is_some_and(|n| n.starts_with("not run by tests")) {
                continue;
            }
            let here = format!("{}:{}", block.file, block.line);
            if block.lang == "sh" {
                // One shell per block, so that its commands share files (a database in /tmp, say).
                let mut script = String::new();
                let mut run: Vec<String> = Vec::new();
                for (cmd, Promise { status, value }) in commands(&block) {
                    let cmd = cmd.strip_prefix("sudo ").unwrap_or(&cmd).to_string();
                    if block.file.ends_with("USAGE.md") {
                        usage_commands.push(cmd.clone());
                    }
                    match cmd.split_whitespace().next() {
                        // The test command is this very suite, which CI runs; the demo needs the root namespace.
                        Some("scripts/test.sh") => continue,
                        Some("scripts/demo.sh") => {
                            run_demo();
                            ran += 1;
                            continue;
                        }
                        _ => {}
                    }
                    let n = run.len();
                    script.push_str(&format!(
                        "( {cmd}\n) >/tmp/.out 2>&1; rc=$?; [ $rc -eq {status} ] || {{ echo \"command {n} exited $rc\"; cat /tmp/.out; exit 1; }}\n"
                    ));
                    // A value promised with success is all the command prints; with a failure, part of its message.
                    let check = match (&value, status) {
                        (None, _) => None,
                        (Some(v), 0) => Some(format!("[ \"$(cat /tmp/.out)\" = '{v}' ]")),
                        (Some(v), _) => Some(format!("grep -qwF -- '{v}' /tmp/.out")),
                    };
                    if let Some(check) = check {
                        script.push_str(&format!(
                            "{check} || {{ echo \"command {n} did not print {}\"; cat /tmp/.out; exit 1; }}\n",
                            value.as_deref().unwrap_or_default()
                        ));
                        values += 1;
                    }
                    run.push(cmd);
                }
                if !run.is_empty() {
                    let out = lab.sh(&script);
                    let text = String::from_utf8_lossy(&out.stdout).into_owned();
                    let failed = text
                        .strip_prefix("command ")
                        .and_then(|t| t.split_whitespace().next())
                        .and_then(|n| n.parse::<usize>().ok())
                        .map(|n| run[n].clone());
                    assert!(
                        out.status.success(),
                        "{here}: `{}` failed:\n{text}{}",
                        failed.unwrap_or_default(),
                        stderr_of(&out)
                    );
                    ran += run.len();
                }
            }
            if let Some(cmd) = block.note.as_deref().and_then(|n| n.strip_prefix("sample:")) {
                let cmd = cmd.trim();
                if block.file.ends_with("USAGE.md") {
                    usage_commands.push(cmd.to_string());
                }
                let out = lab.sh(cmd);
                assert!(out.status.success(), "{here}: sample `{cmd}` failed: {}", stderr_of(&out));
                let shown = |line: &str| masked(&without_kernel_version(line)).trim_end().to_string();
                let real: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(shown).collect();
                // The sample's lines, in its order and as often as it shows them; the output may have more.
                let mut rest = real.iter();
                for line in block.body.iter().map(|l| shown(l)) {
                    assert!(
                        rest.any(|r| *r == line),
                        "{here}: the sample line\n  {line}\nis not in the output of `{cmd}` after the lines before it:\n{}\n(stderr: {})",
                        real.join("\n"),
                        stderr_of(&out)
                    );
                }
                ran += 1;
            }
        }
    }
    assert!(ran > 60, "only {ran} commands and samples ran: is the parser broken?");
    assert!(values >= 8, "only {values} documented values checked: is the parser broken?");

    // Every option has an example.
    let help =
        String::from_utf8(Command::new(env!("CARGO_BIN_EXE_prtip")).arg("--help").output().unwrap().stdout).unwrap();
    // Long options, short ones, and nmap's two-letter forms (-iL, -oN...) named in the help.
    let options: BTreeSet<&str> = help
        .split_whitespace()
        .map(|w| w.trim_start_matches('(').trim_end_matches(|c: char| !c.is_ascii_alphanumeric()))
        .filter(|w| match w.strip_prefix("--") {
            Some(long) => long.len() > 1 && long.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
            None => {
                w.len() > 1 && w.len() <= 3 && w.starts_with('-') && w[1..].chars().all(|c| c.is_ascii_alphabetic())
            }
        })
        .collect();
    assert!(options.len() > 40, "{options:?}");
    let examples = usage_commands.join(" ");
    let missing: Vec<&str> = options
        .into_iter()
        .filter(|o| !examples.split_whitespace().any(|w| w == *o || w.starts_with(&format!("{o}="))))
        .collect();
    assert!(missing.is_empty(), "docs/USAGE.md has no example that uses {missing:?}");
    for command in ["db", "report", "doctor", "completions", "man"] {
        assert!(usage_commands.iter().any(|c| c.starts_with(&format!("prtip {command}"))), "no example of {command}");
    }
}

fn run_demo() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let state = temp_dir();
    let out = Command::new(root.join("scripts/demo.sh"))
        .current_dir(root)
        .env("PRTIP_BIN", env!("CARGO_BIN_EXE_prtip"))
        .env("XDG_STATE_HOME", state.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "scripts/demo.sh: {}", stderr_of(&out));
    // The demo target's truth: 22, 80 and 443 open on each of its 256 hosts.
    assert!(stderr_of(&out).contains(" 768 open, "), "{}", stderr_of(&out));
}

#[test]
fn the_architecture_names_every_source_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let architecture = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).unwrap();
    let mut stack = vec![root.join("src")];
    let mut missing = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if !architecture.contains(&name) {
                    missing.push(path.strip_prefix(root).unwrap().display().to_string());
                }
            }
        }
    }
    assert!(missing.is_empty(), "docs/ARCHITECTURE.md does not mention {missing:?}");
}

#[test]
fn the_example_plot_is_a_prtip_plot() {
    let svg = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/rtt-example.svg");
    let out = Command::new("xmllint").arg("--noout").arg(&svg).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("round trip by state"), "not a prtip report plot");
    for series in ["open", "closed", "filtered"] {
        assert!(text.contains(&format!(r#"data-series="{series}""#)), "no {series} line");
    }
}
