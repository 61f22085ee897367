//! Storage end to end: every received result reaches the database and every
//! output file, for completed, interrupted (SIGINT) and killed (SIGKILL)
//! scans, and a full disk gives a clear error and a consistent database.

mod common;

use common::{Lab, assert_files_hold, assert_valid_nmap_xml, path_in, rows, sql, stderr_of, temp_dir};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

fn count(db: &str, query: &str) -> usize {
    sql(db, query).parse().unwrap()
}

fn prtip_db(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prtip")).arg("db").args(args).output().unwrap()
}

#[test]
fn the_documented_database_command_counts_every_answering_port() {
    let mut lab = Lab::new(true);
    lab.listen_in_scanner(&[22, 80, 443], "127.0.0.1");
    let dir = temp_dir();
    let db = path_in(&dir, "test.db");
    let database = format!("--database={db}");
    for run in 1..=2 {
        let out = lab.prtip(&["-s", "syn", "-p", "1-10000", "--with-db", &database, "127.0.0.1"]).output().unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        assert_eq!(sql(&db, "SELECT COUNT(*) FROM scan_results;"), (10_000 * run).to_string());
    }
    assert_eq!(
        sql(&db, "SELECT id, status, open_count, closed_count FROM scans"),
        "1|completed|3|9997\n2|completed|3|9997"
    );
    assert_eq!(
        sql(&db, "SELECT port FROM scan_results WHERE scan_id = 2 AND state = 'open' ORDER BY port"),
        "22\n80\n443"
    );
    let list = prtip_db(&["list", "--database", &db]);
    assert!(list.status.success());
    assert_eq!(String::from_utf8(list.stdout).unwrap().lines().count(), 3, "header and two scans");
}

#[test]
fn a_completed_scan_is_in_the_database_and_in_every_file() {
    let mut lab = Lab::new(true);
    lab.listen(&[22, 443]);
    lab.target_rules("tcp dport 7000 drop");
    let dir = temp_dir();
    let (db, base) = (path_in(&dir, "scan.db"), path_in(&dir, "out"));
    let args = ["-p", "1-2000,7000", "10.201.0.1-10.201.0.4", "-o", "ndjson", "--wait", "0.5", "--with-db"];
    let out = lab.prtip(&[&args[..], &["--database", &db, "--store-silent", "-oA", &base]].concat()).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let stdout = rows(&out.stdout);
    assert_eq!(stdout.len(), 4 * 2001);
    assert_files_hold(&base, &stdout);

    // Database: every result, the silent ones too with --store-silent.
    assert_eq!(count(&db, "SELECT COUNT(*) FROM scan_results"), 4 * 2001);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM scan_results WHERE state = 'open'"), 8);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM scan_results WHERE state = 'filtered' AND port = 7000"), 4);
    assert_eq!(sql(&db, "SELECT status, open_count, closed_count, filtered_count FROM scans"), "completed|8|7992|4");
    assert!(sql(&db, "SELECT config FROM scans").contains(r#""ports":"1-2000,7000""#));

    // Files: the same results in each format.
    let json = std::fs::read(format!("{base}.json")).unwrap();
    assert_eq!(rows(&json).len(), 4 * 2001);
    let csv = std::fs::read_to_string(format!("{base}.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 4 * 2001);
    assert!(csv.starts_with("ip,port,proto,service,state,reason,ttl,rtt_us,time\n"));
    let gnmap = std::fs::read_to_string(format!("{base}.gnmap")).unwrap();
    assert_eq!(gnmap.lines().filter(|l| l.starts_with("Host: ")).count(), 4);
    assert!(
        gnmap.contains("22/open/tcp//ssh///, 443/open/tcp//https///, 7000/filtered/tcp//afs3-fileserver///"),
        "{gnmap}"
    );
    let text = std::fs::read_to_string(format!("{base}.nmap")).unwrap();
    assert_eq!(text.matches("Not shown: 1998 closed tcp ports (reset)").count(), 4);
    let xml_path = format!("{base}.xml");
    assert_valid_nmap_xml(&xml_path);
    let xml = std::fs::read_to_string(&xml_path).unwrap();
    assert_eq!(xml.matches(r#"<state state="open""#).count(), 8);
    assert_eq!(xml.matches(r#"<extraports state="closed" count="1998">"#).count(), 4);
    // nmap's own ndiff reads it: a scan compared with itself has no differences.
    let diff = Command::new("ndiff").args([&xml_path, &xml_path]).output().expect("ndiff must be installed");
    assert_eq!(diff.status.code(), Some(0), "ndiff: {}{}", String::from_utf8_lossy(&diff.stdout), stderr_of(&diff));

    // prtip db export writes the same rows back out.
    let export = prtip_db(&["export", "1", "-o", "csv", "--database", &db]);
    assert!(export.status.success(), "{}", stderr_of(&export));
    assert_eq!(String::from_utf8(export.stdout).unwrap().lines().count(), 1 + 4 * 2001);
    let export_xml = path_in(&dir, "export.xml");
    let export = prtip_db(&["export", "1", "-o", "xml", "--database", &db]);
    std::fs::write(&export_xml, export.stdout).unwrap();
    assert_valid_nmap_xml(&export_xml);

    // Without --store-silent the silent probes are counted, not stored.
    let out = lab.prtip(&[&args[..], &["--database", &db, "-q", "--transport", "raw"]].concat()).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(count(&db, "SELECT COUNT(*) FROM scan_results WHERE scan_id = 2"), 4 * 2000);
    assert_eq!(sql(&db, "SELECT filtered_count FROM scans WHERE id = 2"), "4");
    // Each scan names the transport that sent it: AF_XDP by default on this veth.
    assert_eq!(sql(&db, "SELECT group_concat(transport) FROM scans"), "af_xdp,raw");

    // --open keeps the database to the open ports, as every output; the scan still counts every state.
    let out = lab.prtip(&[&args[..], &["--database", &db, "-q", "--open"]].concat()).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(
        sql(&db, "SELECT ip || ':' || port FROM scan_results WHERE scan_id = 3 ORDER BY ip, port"),
        (1..=4).flat_map(|h| [22, 443].map(|p| format!("10.201.0.{h}:{p}"))).collect::<Vec<_>>().join("\n")
    );
    assert_eq!(sql(&db, "SELECT open_count, closed_count, filtered_count FROM scans WHERE id = 3"), "8|7992|4");
}

/// Starts a slow scan of 32768 open hosts and stops it with `signal` once it
/// has printed 2000 results (about two thirds of a second at 3000 probes/s).
fn stopped_scan(lab: &Lab, dir: &tempfile::TempDir, signal: i32) -> (Output, String, String) {
    let (db, base) = (path_in(dir, "scan.db"), path_in(dir, "out"));
    let mut scan = lab.start(&[
        "-p",
        "80",
        "10.201.0.0/17",
        "--rate",
        "3000",
        "-o",
        "ndjson",
        "--with-db",
        "--database",
        &db,
        "-oA",
        &base,
    ]);
    scan.wait_for_rows(1);
    // Reading the database while the scan writes it must not disturb the scan.
    let list = prtip_db(&["list", "--database", &db]);
    assert!(list.status.success(), "{}", stderr_of(&list));
    assert!(String::from_utf8_lossy(&list.stdout).contains("running"), "{}", String::from_utf8_lossy(&list.stdout));
    scan.wait_for_rows(2000);
    scan.signal(signal);
    (scan.finish(), db, base)
}

/// A scan stopped by `signal` (SIGINT, SIGTERM, SIGHUP) ends as interrupted with
/// every result printed in the database and in every file.
fn stopped_cleanly_loses_nothing(signal: i32) {
    let mut lab = Lab::new(true);
    lab.listen(&[80]);
    let dir = temp_dir();
    let (out, db, base) = stopped_scan(&lab, &dir, signal);
    assert_eq!(out.status.code(), Some(130), "{}", stderr_of(&out));
    let printed = rows(&out.stdout);
    let received = printed.len();
    assert!((2000..32768).contains(&received), "{received} results");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM scan_results"), received);
    assert_eq!(sql(&db, "SELECT status FROM scans"), "interrupted");
    assert_eq!(sql(&db, "SELECT open_count FROM scans"), received.to_string());
    let stored = sql(&db, "SELECT ip || ' ' || port || ' ' || state || ' ' || reason FROM scan_results");
    let stored: BTreeSet<&str> = stored.lines().collect();
    let said: Vec<String> = printed.iter().map(|r| format!("{} {} {} {}", r.ip, r.port, r.state, r.reason)).collect();
    assert!(stored == said.iter().map(String::as_str).collect(), "the database holds other results than were printed");
    assert_eq!(rows(&std::fs::read(format!("{base}.json")).unwrap()).len(), received);
    assert_eq!(std::fs::read_to_string(format!("{base}.csv")).unwrap().lines().count(), received + 1);
    assert_files_hold(&base, &printed);
    assert!(std::fs::read_to_string(format!("{base}.nmap")).unwrap().contains("(interrupted)"));
    assert!(std::fs::read_to_string(format!("{base}.xml")).unwrap().contains(r#"exit="error" errormsg="interrupted""#));
    assert!(!Path::new(&format!("{db}.1.prtip-journal")).exists(), "journal left after a clean stop");
}

#[test]
fn sigint_mid_scan_loses_nothing() {
    stopped_cleanly_loses_nothing(libc::SIGINT);
}

#[test]
fn sigterm_mid_scan_loses_nothing() {
    stopped_cleanly_loses_nothing(libc::SIGTERM);
}

/// A closed terminal or SSH connection sends SIGHUP: the scan ends as it does on Ctrl-C.
#[test]
fn sighup_mid_scan_loses_nothing() {
    stopped_cleanly_loses_nothing(libc::SIGHUP);
}

#[test]
fn sigkill_leaves_a_database_that_recovers_from_its_journal() {
    let mut lab = Lab::new(true);
    lab.listen(&[80]);
    let dir = temp_dir();
    let (out, db, _) = stopped_scan(&lab, &dir, libc::SIGKILL);
    assert_eq!(out.status.code(), None, "killed by a signal");
    // The kill may cut the last line short: count the complete ones.
    let printed = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
        .count();
    assert!(printed > 100, "{printed} results printed before the kill");
    assert_eq!(sql(&db, "SELECT status FROM scans"), "running", "nobody closed the books");
    let recover = prtip_db(&["recover", "--database", &db]);
    let report = String::from_utf8_lossy(&recover.stdout);
    assert!(recover.status.success(), "{}", stderr_of(&recover));
    assert!(report.contains("integrity check ok"), "{report}");
    assert_eq!(sql(&db, "PRAGMA integrity_check"), "ok");
    assert_eq!(sql(&db, "SELECT status FROM scans"), "interrupted");
    // What was printed had been handed to the storage task with it; only the
    // last moments before the kill (at 3000 results/s) can be missing.
    let stored = count(&db, "SELECT COUNT(*) FROM scan_results");
    assert!(stored + 300 >= printed && stored <= 32768, "stored {stored}, printed {printed}");
    assert_eq!(sql(&db, "SELECT open_count FROM scans"), stored.to_string());
    assert!(report.contains(&format!("{stored} results restored")), "{report}");
    assert!(!Path::new(&format!("{db}.1.prtip-journal")).exists());
}

/// A small tmpfs mounted on a directory of the test's own, unmounted before the directory goes.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = temp_dir();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status();
        assert!(st.unwrap().success(), "mount tmpfs");
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_disk_gives_a_clear_error_and_a_consistent_database() {
    let mut lab = Lab::new(true);
    lab.listen(&[80]);
    let disk = Tmpfs::mount("1m");
    let db = path_in(&disk.0, "scan.db");
    let out =
        lab.prtip(&["-p", "80-83", "10.201.0.0/18", "--with-db", "--database", &db, "-q", "--open"]).output().unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("prtip: error: storing results: "), "{err}");
    assert!(err.contains("full") || err.contains("No space left"), "{err}");
    // Every open result still reached standard output.
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains("/tcp")).count(), 16384);
    assert_eq!(sql(&db, "PRAGMA integrity_check"), "ok");
    // Without -q the failure is told when it happens, before the summary's error.
    let other = Tmpfs::mount("1m");
    let db2 = path_in(&other.0, "scan.db");
    let out = lab.prtip(&["-p", "80-83", "10.201.0.0/18", "--with-db", "--database", &db2, "--open"]).output().unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    let warned = lines.iter().position(|l| l.starts_with("prtip: warning: storing results failed ("));
    let failed = lines.iter().position(|l| l.starts_with("prtip: error: storing results: "));
    assert!(warned.is_some() && warned < failed, "{err}");
    // Reading the database needs no room on the full disk.
    let list = Command::new(env!("CARGO_BIN_EXE_prtip")).args(["db", "list", "--database", &db]).output().unwrap();
    assert!(list.status.success(), "{}", stderr_of(&list));
    assert_eq!(String::from_utf8_lossy(&list.stdout).lines().count(), 2, "a header and the scan");
}

/// Shards run on separate machines, each with a database of its own, are
/// merged into one scan that is exactly the unsharded scan's truth; files
/// that do not make one scan are refused with one line.
#[test]
fn the_databases_of_a_scans_shards_merge_into_one_scan() {
    let mut lab = Lab::new(true);
    common::one_host_target(&mut lab);
    let dir = temp_dir();
    let shard_db = |i: u32| path_in(&dir, &format!("shard{i}.db"));
    for i in 1..=3 {
        let (shard, db) = (format!("{i}/3"), shard_db(i));
        let args = ["-p", "1-2000,7000", "10.201.0.1", "--shard", &shard, "--seed", "7", "--database", &db];
        let out = lab.prtip(&[&args[..], &["--store-silent", "-q"]].concat()).output().unwrap();
        assert!(out.status.success(), "shard {i}: {}", stderr_of(&out));
    }
    let merged = path_in(&dir, "merged.db");
    let merge = |inputs: &[String]| {
        let mut args = vec!["db".to_string(), "merge".into(), merged.clone()];
        args.extend(inputs.iter().cloned());
        lab.prtip(&args.iter().map(String::as_str).collect::<Vec<_>>()).output().unwrap()
    };
    let out = merge(&[shard_db(2), shard_db(1), shard_db(3)]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("scan 1 merged from 3 shards, 2001 results"));
    assert_eq!(
        sql(&merged, "SELECT status, open_count, closed_count, filtered_count, probes_sent >= 2001 FROM scans"),
        "completed|3|1997|1|1"
    );
    assert_eq!(sql(&merged, "SELECT COUNT(*), COUNT(DISTINCT port) FROM scan_results"), "2001|2001");
    assert_eq!(
        sql(&merged, "SELECT group_concat(port) FROM scan_results WHERE state = 'open' ORDER BY port"),
        "1,22,443"
    );
    assert_eq!(sql(&merged, "SELECT json_extract(config, '$.merged_shards'), seed FROM scans"), "3|7");
    assert_eq!(sql(&merged, "SELECT COUNT(*) FROM scan_latency WHERE scan_id = 1 AND series = 'closed'"), "1");
    let export = lab.prtip(&["db", "export", "1", "--database", &merged, "-o", "ndjson"]).output().unwrap();
    assert_eq!(rows(&export.stdout).len(), 2001, "{}", stderr_of(&export));
    // A shard missing, one given twice, a database of an unsharded scan, the output among the inputs.
    let unsharded = path_in(&dir, "unsharded.db");
    sql(&merged, &format!("VACUUM INTO '{unsharded}'"));
    for (inputs, says) in [
        (vec![shard_db(1), shard_db(3)], "shards missing from the merge: 2/3"),
        (vec![shard_db(1), shard_db(1), shard_db(2), shard_db(3)], "both hold shard 1/3"),
        (vec![unsharded], "holds no sharded scan"),
        (vec![shard_db(1), merged.clone()], "is one of the shards: merge into another file"),
    ] {
        let out = merge(&inputs);
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{inputs:?}: {err}");
        assert!(err.contains(says) && err.lines().count() == 1, "{inputs:?}: {err}");
    }
    assert_eq!(sql(&merged, "SELECT COUNT(*) FROM scans"), "1", "a refused merge adds nothing");
}
