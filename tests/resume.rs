//! `--resume`: a scan interrupted at several points and resumed each time
//! finds exactly what one uninterrupted scan finds, each result once, with
//! and without a database; the last run's output alone is the whole scan,
//! since a resumed run prints the earlier runs' results first. Run as root
//! (CI does).

mod common;

use common::{
    Lab, Row, Running, assert_files_hold, assert_sweep_truth, path_in, rows, sql, stderr_of, sweep_target, temp_dir,
    try_sql,
};
use std::process::{Command, Output};

/// The sweep at a rate that makes one run last seconds: 65,536 probes (3.3
/// s), and a retry of each of the silent upper /17 among them (1.6 s).
const SWEEP: [&str; 11] =
    ["-p", "80", "10.201.0.0/16", "--rate", "20000", "--wait", "0.5", "--transport", "raw", "-o", "ndjson"];

/// Result lines the first run prints before it is interrupted: about a
/// sixth of the answers, with most of the probes left.
const FIRST_STOP: usize = 5000;

/// Runs `args` and interrupts the run as soon as it sends its first retry,
/// which its debug log says at once: probes with retries in flight are then
/// in its send window.
fn interrupted_while_retrying(lab: &Lab, args: &[&str]) -> Output {
    let mut run = Running::start(lab.prtip(args).env("RUST_LOG", "prtip::engine::run=debug"));
    run.wait_for_stderr("a retry", |l| l.contains(" first retry "));
    run.signal(libc::SIGINT);
    run.finish()
}

/// Whether every row of `earlier` is in `later`, as it was.
fn assert_said_again(earlier: &[Row], later: &[Row], what: &str) {
    let key = |r: &Row| (r.ip.clone(), r.port, r.state.clone(), r.reason.clone());
    let later: std::collections::BTreeSet<_> = later.iter().map(key).collect();
    let missing = earlier.iter().filter(|r| !later.contains(&key(r))).count();
    assert_eq!(missing, 0, "{what}: {missing} of the earlier run's results are not printed again");
}

/// Interrupts the scan twice (early, then, in the first resumed run, once it
/// retries) and lets the second resumed run finish. `between` runs
/// after the first interruption, with its output. Each run prints what the
/// ones before printed; returns the last run's standard output rows.
fn interrupted_twice(lab: &Lab, first: &[&str], resume: &[&str], between: impl Fn(&Output)) -> Vec<Row> {
    let out = lab.interrupt_after_rows(first, FIRST_STOP);
    assert_eq!(out.status.code(), Some(130), "run 0: {}", stderr_of(&out));
    let run0 = rows(&out.stdout);
    assert!(run0.len() < 65536, "run 0 was not interrupted: {} rows", run0.len());
    between(&out);
    let out = interrupted_while_retrying(lab, resume);
    assert_eq!(out.status.code(), Some(130), "run 1: {}", stderr_of(&out));
    let run1 = rows(&out.stdout);
    assert!(run1.len() < 65536, "run 1 was not interrupted: {} rows", run1.len());
    assert_said_again(&run0, &run1, "run 1");
    let out = lab.prtip(resume).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "run 2: {}", stderr_of(&out));
    let run2 = rows(&out.stdout);
    assert_said_again(&run1, &run2, "run 2");
    run2
}

#[test]
fn resumed_runs_without_a_database_add_up_to_one_uninterrupted_scan() {
    let mut lab = Lab::new(true);
    sweep_target(&mut lab);
    let base = lab.state_dir.join("sweep");
    let base = base.to_str().unwrap();
    let first = [&SWEEP[..], &["-oA", base]].concat();
    // A crash in the middle of an append leaves a torn record: what is appended
    // after it must still be read back.
    let torn = |_: &Output| {
        let results = lab.checkpoints().into_iter().find(|p| p.to_string_lossy().ends_with(".results")).unwrap();
        // A journal that lost results is refused, not resumed into filtered ports.
        let kept = std::fs::read(&results).unwrap();
        std::fs::write(&results, &kept[..kept.len() / 2]).unwrap();
        let refused = lab.prtip(&["--resume", "-q"]).output().unwrap();
        let err = stderr_of(&refused);
        assert_eq!(refused.status.code(), Some(2), "{err}");
        assert!(err.contains("results its checkpoint counts on") && err.lines().count() == 1, "{err}");
        std::fs::write(&results, &kept).unwrap();
        let mut f = std::fs::OpenOptions::new().append(true).open(results).unwrap();
        std::io::Write::write_all(&mut f, &[40, 0, 0, 0, 1, 2]).unwrap();
    };
    // The interrupted run says how to resume; a bare --resume takes the newest checkpoint.
    let last = interrupted_twice(&lab, &first, &["--resume", "-q"], torn);
    assert_sweep_truth(&last);
    // The output files are written anew by each run, the earlier runs' results first.
    assert_sweep_truth(&rows(&std::fs::read(format!("{base}.json")).unwrap()));
    assert_files_hold(base, &last);
    assert!(lab.checkpoints().is_empty(), "a completed scan leaves no checkpoint: {:?}", lab.checkpoints());
}

#[test]
fn resumed_runs_with_a_database_finish_the_same_scan() {
    let mut lab = Lab::new(true);
    sweep_target(&mut lab);
    let db = lab.state_dir.join("scan.db");
    let db = db.to_str().unwrap();
    let first = [&SWEEP[..], &["--with-db", "--store-silent", "--database", db]].concat();
    let resume = ["--resume", "1", "--database", db, "-q"];
    let hint = format!("prtip: resume with: prtip --resume 1 --database {db}");
    let checkpoint_in_the_database = |first: &Output| {
        assert!(stderr_of(first).contains(&hint), "{}", stderr_of(first));
        assert!(lab.checkpoints().is_empty(), "with a database the checkpoint is in the database");
    };
    let last = interrupted_twice(&lab, &first, &resume, checkpoint_in_the_database);
    assert_sweep_truth(&last);
    let sql = |q: &str| sql(db, q);
    assert_eq!(sql("SELECT COUNT(*) FROM scans"), "1", "one scan, resumed in place");
    assert_eq!(sql("SELECT status, open_count, closed_count, filtered_count FROM scans"), "completed|2048|30720|32768");
    assert_eq!(sql("SELECT COUNT(*), COUNT(DISTINCT ip) FROM scan_results"), "65536|65536");
    // A completed scan is not resumed again.
    let again = lab.prtip(&resume).output().unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr_of(&again).contains("scan 1 is not an interrupted scan"), "{}", stderr_of(&again));
}

#[test]
fn settings_that_contradict_the_checkpoint_are_refused() {
    let mut lab = Lab::new(true);
    sweep_target(&mut lab);
    let mut scan = lab.start(&SWEEP);
    scan.wait_until("a checkpoint file", |_| lab.checkpoint_file().is_some());
    let checkpoint = lab.checkpoint_file().unwrap();
    let checkpoint = checkpoint.to_str().unwrap();
    // A running scan's checkpoint is not taken over.
    for resume in [&["--resume", checkpoint][..], &["--resume"]] {
        let out = lab.prtip(resume).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
        let err = stderr_of(&out);
        assert!(err.contains("still running") || err.contains("no checkpoint to resume"), "{err}");
    }
    // Stopped once it has results, it has a checkpoint past the start to resume from.
    scan.wait_for_rows(FIRST_STOP);
    scan.signal(libc::SIGINT);
    let out = scan.finish();
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
        let out = lab.prtip(&[&["--resume", checkpoint][..], extra].concat()).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", stderr_of(&out));
        let err = stderr_of(&out);
        assert!(err.contains(message) && err.lines().count() == 1, "{extra:?}: {err}");
    }
    // Saying again what the checkpoint says is no contradiction.
    let out = lab.prtip(&["--resume", checkpoint, "-p", "80", "--rate", "20000", "--status-json"]).output().unwrap();
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

/// Probes of the whole sweep: each once, and the silent upper /17 again.
const WHOLE_SWEEP_PROBES: u64 = 65536 + 32768;

/// The killed scan's database, once recovered, holds its replies and a
/// checkpoint; resumed from there, the scan sends fewer probes than the whole
/// sweep, prints what the database held first, and then exactly the rest.
#[test]
fn a_killed_scan_resumes_from_its_last_checkpoint() {
    let mut lab = Lab::new(true);
    sweep_target(&mut lab);
    let dir = temp_dir();
    let (db, json) = (path_in(&dir, "scan.db"), path_in(&dir, "sweep.json"));
    let first = [&SWEEP[..], &["--with-db", "--store-silent", "--database", &db, "-oJ", &json]].concat();
    let mut scan = lab.start(&first);
    // Killed once its checkpoint is a third into the sweep, so that a restart from zero would show.
    let linear = "SELECT resume_position FROM scans";
    scan.wait_until("a checkpoint past probe 20000", |_| {
        try_sql(&db, linear).ok().and_then(|v| v.parse::<u64>().ok()).is_some_and(|p| p >= 20000)
    });
    scan.signal(libc::SIGKILL);
    assert_eq!(scan.finish().status.code(), None, "killed by the signal");
    let recover =
        Command::new(env!("CARGO_BIN_EXE_prtip")).args(["db", "recover", "--database", &db]).output().unwrap();
    assert!(recover.status.success(), "{}", stderr_of(&recover));
    let kept: Vec<Row> = sql(&db, "SELECT ip, state, reason FROM scan_results")
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            let (ip, state, reason) = (f[0].into(), f[1].into(), f[2].into());
            Row { ip, port: 80, state, reason, ttl: None, rtt_us: None }
        })
        .collect();
    assert!(!kept.is_empty(), "the killed run stored nothing");
    let sent_before: u64 = sql(&db, "SELECT probes_sent FROM scans").parse().unwrap();
    let out = lab.prtip(&["--resume", "1", "--database", &db, "-v"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let printed = rows(&out.stdout);
    // The resumed run's output alone is the whole sweep, each result once, what the database held first.
    assert_sweep_truth(&printed);
    assert_said_again(&kept, &printed[..kept.len()], "the resumed run");
    let first_note = format!("prtip: {} results of the interrupted runs were printed first", kept.len());
    assert!(stderr_of(&out).contains(&first_note), "{first_note}: {}", stderr_of(&out));
    let sent = sql(&db, "SELECT probes_sent FROM scans").parse::<u64>().unwrap() - sent_before;
    assert!(sent < WHOLE_SWEEP_PROBES, "the resumed run sent {sent} probes, as many as the whole sweep");
    assert!(stderr_of(&out).contains(&format!("prtip: {sent} probes sent in ")), "{}", stderr_of(&out));
    assert_sweep_truth(&rows(&std::fs::read(&json).unwrap()));
    assert_eq!(
        sql(
            &db,
            "SELECT COUNT(*), COUNT(DISTINCT ip) FROM scan_results; SELECT status, probes_sent >= 65536 FROM scans"
        ),
        "65536|65536\ncompleted|1"
    );
}

/// The exact truth of `sweep_target` for one port of 10.201.0.0/`prefix`
/// (within the lower, answering /17): port 80 open where the last octet is a
/// multiple of 16 and closed elsewhere, port 22 closed everywhere.
fn assert_answering_truth(rows: &[Row], port: u16, prefix: u8) {
    let hosts = 1usize << (32 - prefix);
    assert_eq!(rows.len(), hosts);
    let ips: std::collections::BTreeSet<std::net::Ipv4Addr> = rows.iter().map(|r| r.ip.parse().unwrap()).collect();
    assert_eq!(ips.len(), hosts, "a host reported twice");
    for r in rows {
        let ip: std::net::Ipv4Addr = r.ip.parse().unwrap();
        assert_eq!(u32::from(ip) >> (32 - prefix), 0x0ac9_0000 >> (32 - prefix), "{} is outside the scan", r.ip);
        let open = port == 80 && ip.octets()[3].is_multiple_of(16);
        assert_eq!((r.port, r.state.as_str()), (port, if open { "open" } else { "closed" }), "{}", r.ip);
    }
}

/// With several interrupted scans' checkpoints, a bare --resume finishes the
/// newest, and the next bare --resume the one left.
#[test]
fn a_bare_resume_takes_the_newest_of_several_checkpoints() {
    let mut lab = Lab::new(true);
    sweep_target(&mut lab);
    let older = ["-p", "80", "10.201.0.0/17", "--rate", "20000", "--wait", "0.5", "-o", "ndjson"];
    let newer = ["-p", "22", "10.201.0.0/18", "--rate", "20000", "--wait", "0.5", "-o", "ndjson"];
    let mut printed: Vec<Vec<Row>> = Vec::new();
    for args in [&older[..], &newer[..]] {
        let out = lab.interrupt_after_rows(args, 2000);
        assert_eq!(out.status.code(), Some(130), "{}", stderr_of(&out));
        printed.push(rows(&out.stdout));
    }
    assert_eq!(lab.checkpoints().len(), 4, "two checkpoints and their results: {:?}", lab.checkpoints());
    for (scan, port, prefix) in [(1, 22, 18), (0, 80, 17)] {
        let out = lab.prtip(&["--resume", "-q"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
        let resumed = rows(&out.stdout);
        assert_said_again(&printed[scan], &resumed, "the resumed run");
        assert_answering_truth(&resumed, port, prefix);
        // The finished scan's checkpoint goes; the other's stays.
        assert_eq!(lab.checkpoints().len(), 2 * scan, "{:?}", lab.checkpoints());
    }
}

/// Killed with SIGKILL at several points, with no database, a scan leaves a
/// checkpoint whose resume prints the whole scan, each result once: what the
/// killed run printed (or never got out of its buffer) and the rest.
#[test]
fn a_scan_killed_anywhere_resumes_to_output_that_is_the_whole_scan() {
    let mut lab = Lab::new(true);
    sweep_target(&mut lab);
    // Kill points spread over the sweep (the answers come with the first
    // 49,152 probes) and into its end, where retries of silent probes are left.
    for after_rows in [1, 9000, 27000] {
        let mut scan = lab.start(&SWEEP);
        scan.wait_for_rows(after_rows);
        scan.signal(libc::SIGKILL);
        let killed = scan.finish();
        assert_eq!(killed.status.code(), None, "killed by the signal");
        let out = lab.prtip(&["--resume", "-q"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "after {after_rows} rows: {}", stderr_of(&out));
        let resumed = rows(&out.stdout);
        assert_said_again(&rows(&killed.stdout), &resumed, "the resumed run");
        assert_sweep_truth(&resumed);
        assert!(lab.checkpoints().is_empty(), "{:?}", lab.checkpoints());
    }
}

/// A small scan whose resumed run must skip a host: 16 hosts x 100 ports at
/// 500 probes/s, three seconds; every port closed but 80, which is open.
const SMALL: [&str; 11] =
    ["-p", "1-100", "10.201.0.0/28", "--rate", "500", "--wait", "0.5", "--transport", "raw", "-o", "ndjson"];
/// The host an exclusion added between the runs names.
const OPTED_OUT: &str = "10.201.0.5";

/// SYNs the target namespace has seen for `OPTED_OUT`, by the counter of the
/// rule `opt_out_target` loads, once no more come: frames a killed prtip
/// sent may still wait in the target's backlog.
fn syns_to_opted_out(lab: &Lab) -> u64 {
    let read = || -> u64 {
        let out = Command::new("ip")
            .args(["netns", "exec", &lab.target_ns, "nft", "list", "table", "inet", "prtiptest"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let at = text.find("counter packets ").unwrap_or_else(|| panic!("no counter in {text}"));
        text[at + "counter packets ".len()..].split_whitespace().next().unwrap().parse().unwrap()
    };
    let mut last = read();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        match read() {
            now if now == last => return now,
            now => last = now,
        }
    }
}

/// Port 80 listens on every target address; a rule counts the SYNs to `OPTED_OUT`.
fn opt_out_target(lab: &mut Lab) {
    lab.listen(&[80]);
    lab.target_rules(&format!("ip daddr {OPTED_OUT} tcp flags & (syn | ack) == syn counter"));
}

/// Whether `rows` say of host `ip` only the truth of `opt_out_target`, each
/// port once; returns how many ports they cover.
fn truth_of_host(rows: &[Row], ip: &str) -> usize {
    let mine: Vec<&Row> = rows.iter().filter(|r| r.ip == ip).collect();
    let ports: std::collections::BTreeSet<u16> = mine.iter().map(|r| r.port).collect();
    assert_eq!(ports.len(), mine.len(), "{ip}: a port reported twice");
    for r in &mine {
        let state = if r.port == 80 { "open" } else { "closed" };
        assert!((1..=100).contains(&r.port) && r.state == state, "{ip}: {r:?}");
    }
    mine.len()
}

/// An exclusion added to the --exclude-file between a killed run and its
/// resume is honoured: the resumed run sends nothing to that host (its own
/// kernel counts none), keeps what the killed run stored of it, reports
/// nothing else of it (no silent port called filtered), and finds exactly
/// the truth of every other host.
#[test]
fn an_exclusion_added_before_the_resume_is_honoured() {
    let mut lab = Lab::new(true);
    opt_out_target(&mut lab);
    let dir = temp_dir();
    let excludes = path_in(&dir, "excludes.txt");
    std::fs::write(&excludes, "# hosts that asked not to be scanned\n").unwrap();
    let mut scan = lab.start(&[&SMALL[..], &["--exclude-file", &excludes]].concat());
    // Killed once its checkpoint is past the start, so that the resumed run starts midway.
    let position = |lab: &Lab| {
        let text = lab.checkpoint_file().and_then(|f| std::fs::read_to_string(f).ok()).unwrap_or_default();
        serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| v["position"].as_u64()).unwrap_or(0)
    };
    scan.wait_until("a checkpoint past probe 200", |_| position(&lab) >= 200);
    scan.signal(libc::SIGKILL);
    let killed = scan.finish();
    assert_eq!(killed.status.code(), None, "killed by the signal");
    let before = truth_of_host(&rows(&killed.stdout), OPTED_OUT);
    assert!(before < 100, "the killed run had finished {OPTED_OUT}");
    let syns = syns_to_opted_out(&lab);

    std::fs::write(&excludes, format!("# hosts that asked not to be scanned\n{OPTED_OUT}\n")).unwrap();
    let out = lab.prtip(&["--resume", "-v"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert_eq!(syns_to_opted_out(&lab), syns, "the resumed run sent {OPTED_OUT} SYNs");
    let note = "prtip: 1 of the checkpoint's hosts are excluded now: nothing more is sent to them";
    assert!(stderr_of(&out).contains(note), "{}", stderr_of(&out));
    let resumed = rows(&out.stdout);
    // What the killed run stored of the opted-out host is kept, and nothing more comes.
    assert!(truth_of_host(&resumed, OPTED_OUT) < 100);
    for host in (0..16).map(|h| format!("10.201.0.{h}")).filter(|h| h != OPTED_OUT) {
        assert_eq!(truth_of_host(&resumed, &host), 100, "{host}: every port once");
    }
    assert!(lab.checkpoints().is_empty(), "the resumed scan completed: {:?}", lab.checkpoints());
}

/// A checkpoint whose hosts were edited to reach beyond the targets its
/// arguments name is refused, in one line, before anything is sent.
#[test]
fn a_checkpoint_whose_hosts_leave_its_targets_is_refused() {
    let mut lab = Lab::new(true);
    opt_out_target(&mut lab);
    let out = lab.interrupt_after_rows(&SMALL, 200);
    assert_eq!(out.status.code(), Some(130), "{}", stderr_of(&out));
    let file = lab.checkpoint_file().unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    let saved = r#""hosts":[["10.201.0.0","10.201.0.15"]]"#;
    assert!(text.contains(saved), "{text}");
    std::fs::write(&file, text.replace(saved, r#""hosts":[["10.201.0.0","10.201.0.15"],["10.9.9.9","10.9.9.9"]]"#))
        .unwrap();
    let syns = syns_to_opted_out(&lab);
    let out = lab.prtip(&["--resume", file.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert_eq!(
        stderr_of(&out),
        "prtip: error: the checkpoint's hosts include 10.9.9.9, which its targets do not name: refused, as it is \
         no checkpoint of that scan\n"
    );
    assert!(out.stdout.is_empty());
    assert_eq!(syns_to_opted_out(&lab), syns, "the refused resume sent probes");
}
