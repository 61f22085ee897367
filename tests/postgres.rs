//! `--postgres`: results stored in a real PostgreSQL (a throwaway cluster
//! of the test's own, from Debian's package), exactly, and without a loss
//! or a duplicate when the server restarts in the middle of a scan.

mod common;

use common::postgres::{PASSWORD, Postgres};
use common::{Lab, assert_sweep_truth, rows, stderr_of, sweep_target, temp_dir};

/// sweep_target's truth as PostgreSQL holds it.
const TRUTH: &str = "closed|30720\nfiltered|32768\nopen|2048";

#[test]
fn a_sweep_lands_in_postgresql_exactly_and_a_restart_mid_scan_loses_nothing() {
    let mut lab = Lab::new(true);
    sweep_target(&mut lab);
    let dir = temp_dir();
    let pg = Postgres::start(dir.path());
    let scan = ["-p", "80", "10.201.0.0/16", "-o", "ndjson", "--store-silent", "--postgres", &pg.url, "-v"];
    let out = lab.prtip(&scan).output().unwrap();
    let err = stderr_of(&out);
    assert!(out.status.success(), "{err}");
    assert_sweep_truth(&rows(&out.stdout));
    assert!(err.contains("stored as scan 1 in PostgreSQL"), "{err}");
    let by_state = "SELECT state, count(*) FROM scan_results WHERE scan_id = $ GROUP BY state ORDER BY state";
    assert_eq!(pg.query(&by_state.replace('$', "1")), TRUTH);
    assert_eq!(
        pg.query("SELECT status, open_count, closed_count, filtered_count, probes_sent > 0 FROM scans"),
        "completed|2048|30720|32768|t"
    );
    // Histograms of the series that had replies: none of the filtered.
    let series = "SELECT string_agg(series, ',' ORDER BY series) FROM scan_latency WHERE scan_id = 1";
    assert_eq!(pg.query(series), "all,closed,open");
    // `prtip db` and `prtip report` read it back from PostgreSQL as from SQLite.
    let export = lab.prtip(&["db", "export", "1", "-o", "ndjson", "--postgres", &pg.url]).output().unwrap();
    assert!(export.status.success(), "{}", stderr_of(&export));
    assert_sweep_truth(&rows(&export.stdout));
    let list = common::run_ok(&mut lab.prtip(&["db", "list", "--postgres", &pg.url]));
    let scan1 = list.lines().nth(1).unwrap_or_default().split_whitespace().collect::<Vec<_>>();
    assert_eq!(scan1[..7], ["1", scan1[1], "completed", scan1[3], "2048", "30720", "32768"], "{list}");
    let report = common::run_ok(&mut lab.prtip(&["report", "1", "--postgres", &pg.url]));
    let open = report.lines().find(|l| l.starts_with("open ")).unwrap_or_else(|| panic!("{report}"));
    assert_eq!(open.split_whitespace().nth(1), Some("2048"), "{report}");

    // The server crashes and comes back while the second scan sends.
    let mut running = lab.start(&[&scan[..], &["--rate", "16000"]].concat());
    running.wait_for_rows(8000);
    pg.restart();
    let out = running.finish();
    let err = stderr_of(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("stored as scan 2 in PostgreSQL (the connection was lost"), "{err}");
    assert_eq!(pg.query(&by_state.replace('$', "2")), TRUTH);
    assert_eq!(pg.query("SELECT status FROM scans WHERE id = 2"), "completed");

    // A scan killed outright leaves its journal; `db recover --postgres`
    // stores what it held past what was stored (nothing twice), and leaves
    // a running scan's journal alone.
    let mut killed = lab.start(&[&scan[..], &["--rate", "4000"]].concat());
    killed.wait_for_rows(8000);
    let mut running = lab.start(&[&scan[..], &["--rate", "2000"]].concat());
    running.wait_for_rows(100);
    killed.signal(libc::SIGKILL);
    killed.finish();
    // The crash made the id sequence jump (PostgreSQL logs it ahead).
    let ids = pg.query("SELECT string_agg(id::text, ' ' ORDER BY id) FROM scans WHERE status = 'running'");
    let (k, r) = ids.split_once(' ').unwrap_or_else(|| panic!("{ids}"));
    let count = format!("SELECT count(*) FROM scan_results WHERE scan_id = {k}");
    let stored_before: u64 = pg.query(&count).parse().unwrap();
    let recover = lab.prtip(&["db", "recover", "--postgres", &pg.url]).output().unwrap();
    let said = String::from_utf8_lossy(&recover.stdout).to_string();
    assert!(recover.status.success(), "{said}{}", stderr_of(&recover));
    let restored: u64 = said
        .strip_prefix(&format!("scan {k}: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{said}"));
    assert!(said.ends_with("PostgreSQL: 1 journals of killed scans recovered\n"), "{said}");
    let stored: u64 = pg.query(&count).parse().unwrap();
    // Exactly what the journal held past what was stored.
    assert!(restored > 0 && stored == stored_before + restored, "{stored_before} {restored} {stored}");
    assert_eq!(pg.query(&format!("SELECT status FROM scans WHERE id = {k}")), "interrupted");
    // What was stored agrees with the complete scan.
    let differ = "SELECT count(*) FROM scan_results a JOIN scan_results b USING (ip, port, proto) \
                  WHERE a.scan_id = $ AND b.scan_id = 1 AND a.state <> b.state";
    assert_eq!(pg.query(&differ.replace('$', k)), "0");
    let again = lab.prtip(&["db", "recover", "--postgres", &pg.url]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&again.stdout), "PostgreSQL: 0 journals of killed scans recovered\n");
    assert_eq!(pg.query(&format!("SELECT status FROM scans WHERE id = {r}")), "running");
    running.signal(libc::SIGINT);
    let out = running.finish();
    assert_eq!(out.status.code(), Some(130), "{}", stderr_of(&out));
    assert_eq!(pg.query(&format!("SELECT status FROM scans WHERE id = {r}")), "interrupted");

    // A server that is not there fails the scan before anything is sent.
    let out = lab.prtip(&["-p", "80", "10.201.0.1", "--postgres", "host=/nonexistent user=prtip"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(err.contains("PostgreSQL: error connecting to server: No such file or directory"), "{err}");
    assert_eq!(stderr_of(&out).lines().count(), 1, "{}", stderr_of(&out));

    // Wrong credentials, a database whose tables are someone else's, one
    // of a newer prtip: one line, exit 2, and nothing written to it.
    let refused = |args: &[&str], said: &str| {
        let out = lab.prtip(args).output().unwrap();
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(said), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    };
    let wrong = pg.url.replace(&format!("password={PASSWORD}"), "password=wrong");
    refused(&["-p", "80", "10.201.0.1", "--postgres", &wrong], "password authentication failed for user \"prtip\"");
    let tables = "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'";
    pg.query("CREATE DATABASE foreign_tables");
    let foreign = pg.url_of("foreign_tables");
    pg.query_in(&foreign, "CREATE TABLE scans (name text); CREATE TABLE scan_results (name text)");
    let said = "the database has tables named as prtip's (scan_results, scans) but no prtip schema";
    refused(&["-p", "80", "10.201.0.1", "--postgres", &foreign], said);
    refused(&["fleet", "create", "--postgres", &foreign, "--shards", "2", "--", "-p", "80", "10.201.0.1"], said);
    assert_eq!(pg.query_in(&foreign, tables), "scan_results,scans");
    refused(&["db", "list", "--postgres", &foreign], "the database holds no prtip scans");
    pg.query("CREATE DATABASE newer");
    let newer = pg.url_of("newer");
    pg.query_in(&newer, "CREATE TABLE prtip_schema (version integer); INSERT INTO prtip_schema VALUES (2)");
    let said = "the database has prtip schema version 2, newer than this prtip's 1";
    refused(&["-p", "80", "10.201.0.1", "--postgres", &newer], said);
    refused(&["db", "show", "1", "--postgres", &newer], said);
    assert_eq!(pg.query_in(&newer, tables), "prtip_schema");
    refused(&["db", "show", "99", "--postgres", &pg.url], "no scan 99 in the database");

    // --open keeps only the open ports, as in every other output.
    let out = lab.prtip(&["-p", "80", "10.201.0.0/24", "--open", "-q", "--postgres", &pg.url]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let latest = "SELECT state, count(*) FROM scan_results WHERE scan_id = (SELECT max(id) FROM scans) GROUP BY state";
    assert_eq!(pg.query(latest), "open|16");
}
