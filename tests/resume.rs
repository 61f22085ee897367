//! `--resume`: a scan interrupted at several points and resumed each time
//! finds exactly what one uninterrupted scan finds, each result once, with
//! and without a database. Run as root (CI does).

mod common;

use common::{Lab, Row, assert_sweep_truth, rows, stderr_of, sweep_target};
use std::process::Stdio;
use std::time::Duration;

/// The sweep at a rate that makes one run last seconds: 65,536 probes in pass
/// 0 (3.3 s), then the silent upper /17 again in pass 1 (1.6 s).
const SWEEP: [&str; 11] =
    ["-p", "80", "10.201.0.0/16", "--rate", "20000", "--wait", "0.5", "--transport", "raw", "-o", "ndjson"];

/// Interrupts the scan twice (in pass 0, then, in the first resumed run,
/// usually in the retry pass) and lets the second resumed run finish.
/// `between` runs after the first interruption. Returns every run's standard
/// output rows, in order.
fn interrupted_twice(lab: &Lab, first: &[&str], resume: &[&str], between: impl Fn()) -> Vec<Row> {
    let mut all = Vec::new();
    for (i, (args, after)) in [(first, Some(1000)), (resume, Some(2800)), (resume, None)].into_iter().enumerate() {
        if i == 1 {
            between();
        }
        let out = lab.run_prtip(args, after.map(Duration::from_millis));
        let expected = if after.is_some() { 130 } else { 0 };
        assert_eq!(out.status.code(), Some(expected), "run {i}: {}", stderr_of(&out));
        let got = rows(&out.stdout);
        if after.is_some() {
            assert!(got.len() < 65536, "run {i} was not interrupted: {} rows", got.len());
        }
        all.extend(got);
    }
    all
}

#[test]
fn resumed_runs_without_a_database_add_up_to_one_uninterrupted_scan() {
    let mut lab = Lab::new(true);
    sweep_target(&mut lab);
    std::fs::create_dir_all(&lab.state_dir).unwrap();
    let json = lab.state_dir.join("sweep.json");
    let first = [&SWEEP[..], &["-oJ", json.to_str().unwrap()]].concat();
    // A crash in the middle of an append leaves a torn record: what is appended
    // after it must still be read back.
    let torn = || {
        let results = lab.checkpoints().into_iter().find(|p| p.to_string_lossy().ends_with(".results")).unwrap();
        let mut f = std::fs::OpenOptions::new().append(true).open(results).unwrap();
        std::io::Write::write_all(&mut f, &[40, 0, 0, 0, 1, 2]).unwrap();
    };
    // The interrupted run says how to resume; a bare --resume takes the newest checkpoint.
    let union = interrupted_twice(&lab, &first, &["--resume", "-q"], torn);
    assert_sweep_truth(&union);
    // The output file is written anew by each run, the earlier runs' results first.
    assert_sweep_truth(&rows(&std::fs::read(&json).unwrap()));
    assert!(lab.checkpoints().is_empty(), "a completed scan leaves no checkpoint: {:?}", lab.checkpoints());
}

#[test]
fn resumed_runs_with_a_database_finish_the_same_scan() {
    let mut lab = Lab::new(true);
    sweep_target(&mut lab);
    std::fs::create_dir_all(&lab.state_dir).unwrap();
    let db = lab.state_dir.join("scan.db");
    let db = db.to_str().unwrap();
    let first = [&SWEEP[..], &["--with-db", "--store-silent", "--database", db]].concat();
    let out = lab.run_prtip(&first, Some(Duration::from_millis(1000)));
    assert_eq!(out.status.code(), Some(130), "{}", stderr_of(&out));
    let hint = format!("prtip: resume with: prtip --resume 1 --database {db}");
    assert!(stderr_of(&out).contains(&hint), "{}", stderr_of(&out));
    let mut union = rows(&out.stdout);
    assert!(lab.checkpoints().is_empty(), "with a database the checkpoint is in the database");
    let resume = ["--resume", "1", "--database", db, "-q"];
    for after in [Some(2800), None] {
        let out = lab.run_prtip(&resume, after.map(Duration::from_millis));
        assert_eq!(out.status.code(), Some(if after.is_some() { 130 } else { 0 }), "{}", stderr_of(&out));
        union.extend(rows(&out.stdout));
    }
    assert_sweep_truth(&union);
    let sql = |q: &str| -> String {
        let out = std::process::Command::new("sqlite3").args([db, q]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(sql("SELECT COUNT(*) FROM scans"), "1", "one scan, resumed in place");
    assert_eq!(sql("SELECT status, open_count, closed_count, filtered_count FROM scans"), "completed|2048|30720|32768");
    assert_eq!(sql("SELECT COUNT(*), COUNT(DISTINCT ip) FROM scan_results"), "65536|65536");
    // A completed scan is not resumed again.
    let again = lab.run_prtip(&resume, None);
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr_of(&again).contains("scan 1 is not an interrupted scan"), "{}", stderr_of(&again));
}

#[test]
fn settings_that_contradict_the_checkpoint_are_refused() {
    let mut lab = Lab::new(true);
    sweep_target(&mut lab);
    let child = lab.prtip(&SWEEP).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let checkpoint = lab.checkpoints().into_iter().find(|p| p.extension().is_some_and(|e| e == "json")).unwrap();
    let checkpoint = checkpoint.to_str().unwrap();
    // A running scan's checkpoint is not taken over.
    for resume in [&["--resume", checkpoint][..], &["--resume"]] {
        let out = lab.run_prtip(resume, None);
        assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
        let err = stderr_of(&out);
        assert!(err.contains("still running") || err.contains("no checkpoint to resume"), "{err}");
    }
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains(&format!("resume with: prtip --resume {checkpoint}")), "{}", stderr_of(&out));
    for (extra, message) in [
        (&["--rate", "1000"][..], "--rate 1000 contradicts the interrupted scan's 20000"),
        (&["-p", "81"][..], "--ports 81 contradicts the interrupted scan's 80"),
        (&["10.201.0.0/24"][..], "TARGETS 10.201.0.0/24 contradicts the interrupted scan's 10.201.0.0/16"),
        (&["--open"][..], "--open contradicts the interrupted scan, which ran without it"),
        // Its results are in a checkpoint file, not a database.
        (&["--with-db"][..], "--with-db contradicts the interrupted scan, which ran without it"),
    ] {
        let out = lab.run_prtip(&[&["--resume", checkpoint][..], extra].concat(), None);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", stderr_of(&out));
        let err = stderr_of(&out);
        assert!(err.contains(message) && err.lines().count() == 1, "{extra:?}: {err}");
    }
    // Saying again what the checkpoint says is no contradiction.
    let out = lab.run_prtip(&["--resume", checkpoint, "-p", "80", "--rate", "20000", "--status-json"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    // Its progress counts what this run has left to send, and its own replies.
    let err = stderr_of(&out);
    let status: Vec<serde_json::Value> = err.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(!status.is_empty(), "{err}");
    for v in &status {
        let planned = v["planned"].as_u64().unwrap();
        assert!(planned > 0 && planned < 65536, "{v}");
        assert!(v["answered"].as_u64().unwrap() <= v["sent"].as_u64().unwrap(), "{v}");
    }
}

#[test]
fn a_killed_scan_resumes_from_its_last_checkpoint() {
    let mut lab = Lab::new(true);
    sweep_target(&mut lab);
    std::fs::create_dir_all(&lab.state_dir).unwrap();
    let (db, json) = (lab.state_dir.join("scan.db"), lab.state_dir.join("sweep.json"));
    let (db, json) = (db.to_str().unwrap(), json.to_str().unwrap());
    let first = [&SWEEP[..], &["--with-db", "--store-silent", "--database", db, "-oJ", json]].concat();
    let child = lab.prtip(&first).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait_with_output().unwrap();
    // Opening the database recovers the killed scan; it is then resumed where its last checkpoint was.
    let out = lab.run_prtip(&["--resume", "1", "--database", db], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert_sweep_truth(&rows(&std::fs::read(json).unwrap()));
    let out = std::process::Command::new("sqlite3")
        .args([
            db,
            "SELECT COUNT(*), COUNT(DISTINCT ip) FROM scan_results; SELECT status, probes_sent >= 65536 FROM scans",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "65536|65536\ncompleted|1\n");
}
