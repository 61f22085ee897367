//! `--postgres`: results stored in a real PostgreSQL (a throwaway cluster
//! of the test's own, from Debian's package), exactly, and without a loss
//! or a duplicate when the server restarts in the middle of a scan.

mod common;

use common::services::Postgres;
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
    // stores what it held (the rows already stored are not stored twice),
    // and leaves a running scan's journal alone.
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
    assert!(restored > 0 && stored >= restored && stored >= stored_before, "{stored_before} {restored} {stored}");
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
}
