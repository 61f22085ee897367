//! `prtip fleet`: four workers, each a process in a scanner namespace of
//! its own joined to the target, share one scan of a /16 x 16 ports through
//! a throwaway PostgreSQL cluster. The union of their shards is exactly the
//! target's truth, also when a worker is killed mid-shard (another takes
//! its shard over from its checkpoint once the lease runs out, or from
//! its first probe if it had stored none) and when PostgreSQL restarts
//! mid-scan. A worker that finds its shard taken over stops probing it.

mod common;

use common::postgres::Postgres;
use common::{Lab, Running, prtip_in, stderr_of, temp_dir};

const OPEN: [u16; 6] = [2, 3, 5, 7, 11, 13];
/// Dropped by the target: filtered, as the silent upper /17 is.
const DROPPED: u16 = 16;
const WORKERS: u8 = 4;

/// The target: ports 1-16 of 10.201.0.0/17 open on `OPEN`, dropped on
/// `DROPPED`, closed elsewhere; the upper /17 silent. It counts the SYNs of
/// the first worker (`FIRST_WORKER`).
fn target(lab: &mut Lab) {
    lab.listen(&OPEN);
    lab.target_rules(&format!(
        "ip saddr {FIRST_WORKER} tcp flags & (syn | ack) == syn counter\ntcp dport {DROPPED} drop"
    ));
}

/// The address of the first worker's namespace (`Lab::add_scanner(1)`).
const FIRST_WORKER: &str = "10.200.1.1";

/// One worker per scanner namespace, each with a state directory of its own, as machines have.
struct Workers {
    lab_scanners: Vec<String>,
    states: Vec<tempfile::TempDir>,
}

impl Workers {
    fn new(lab: &mut Lab) -> Workers {
        let lab_scanners = (1..=WORKERS).map(|n| lab.add_scanner(n)).collect();
        Workers { lab_scanners, states: (0..WORKERS).map(|_| temp_dir()).collect() }
    }

    fn start(&self, pg: &Postgres, fleet: &str, rate: &str) -> Vec<Running> {
        (0..WORKERS as usize).map(|i| self.start_one(i, pg, fleet, rate)).collect()
    }

    fn start_one(&self, i: usize, pg: &Postgres, fleet: &str, rate: &str) -> Running {
        let args = ["fleet", "work", "--postgres", &pg.url, "--fleet", fleet, "--", "--transport", "raw"];
        let mut cmd = prtip_in(&self.lab_scanners[i], self.states[i].path(), &args);
        cmd.args(["--rate", rate, "-q"]);
        Running::start(&mut cmd)
    }
}

/// The fleets' scan: the target's /16 x 16 ports.
const SWEEP: [&str; 5] = ["-p", "1-16", "10.201.0.0/16", "--retries", "2"];

/// Creates fleet `name` of `scan` in `shards`, which says it has `probes`; returns its id.
fn create(lab: &Lab, pg: &Postgres, name: &str, shards: &str, lease: &str, scan: &[&str], probes: &str) -> String {
    let args = ["fleet", "create", "--postgres", &pg.url, "--shards", shards, "--lease", lease, "--name", name, "--"];
    let out = lab.prtip(&[&args[..], scan].concat()).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{said}{}", stderr_of(&out));
    let id = said.strip_prefix("fleet ").and_then(|s| s.split(':').next()).unwrap_or_else(|| panic!("{said}"));
    assert!(said.contains(&format!(": {probes} probes in {shards} shards")), "{said}");
    id.to_string()
}

/// Every worker ended well, having found no shard left.
fn all_finished(workers: Vec<Running>) -> Vec<String> {
    workers
        .into_iter()
        .map(|w| {
            let out = w.finish();
            let err = stderr_of(&out);
            assert!(out.status.success(), "{err}");
            assert!(err.ends_with("prtip: fleet: every shard is done\n"), "{err}");
            err
        })
        .collect()
}

/// The fleet's results in PostgreSQL are exactly the target's truth, each once.
fn assert_truth(pg: &Postgres, fleet: &str) {
    let of_fleet = format!("scan_results r JOIN fleet_shards s ON s.scan_id = r.scan_id WHERE s.fleet_id = {fleet}");
    let open = OPEN.map(|p| p.to_string()).join(",");
    let counts = pg.query(&format!(
        "SELECT r.state, count(*), count(DISTINCT (r.ip, r.port)), \
         count(*) FILTER (WHERE r.ip << '10.201.0.0/17' AND (r.port IN ({open})) = (r.state = 'open') \
         AND r.port BETWEEN 1 AND 15) FROM {of_fleet} GROUP BY r.state ORDER BY r.state"
    ));
    // 32768 hosts x 6 open ports, x 9 closed ones; the rest filtered, not stored.
    assert_eq!(counts, "closed|294912|294912|294912\nopen|196608|196608|196608");
    let scans = pg.query(&format!(
        "SELECT count(*), sum(sc.open_count), sum(sc.closed_count), sum(sc.filtered_count), \
         bool_and(sc.status = 'completed') FROM scans sc JOIN fleet_shards s ON s.scan_id = sc.id \
         WHERE s.fleet_id = {fleet}"
    ));
    assert_eq!(scans, "4|196608|294912|557056|t");
    let shards = pg.query(&format!("SELECT string_agg(status, ',') FROM fleet_shards WHERE fleet_id = {fleet}"));
    assert_eq!(shards, "done,done,done,done");
}

#[test]
fn four_workers_share_a_scan_exactly_through_a_killed_worker_and_a_database_restart() {
    let mut lab = Lab::new(true);
    target(&mut lab);
    let workers = Workers::new(&mut lab);
    let dir = temp_dir();
    let pg = Postgres::start(dir.path());

    // Four workers, four shards.
    let fleet = create(&lab, &pg, "plain", "4", "60", &SWEEP, "1048576");
    // A worker whose options do not fit fails, and holds no shard for its lease's 60 s.
    let args = ["fleet", "work", "--postgres", &pg.url, "--fleet", &fleet, "--", "--transport", "raw", "--queues", "2"];
    let out = prtip_in(&workers.lab_scanners[0], workers.states[0].path(), &args).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    let held = format!("SELECT count(*) FROM fleet_shards WHERE fleet_id = {fleet} AND lease_until > now()");
    assert_eq!(pg.query(&held), "0");
    let errs = all_finished(workers.start(&pg, &fleet, "30000"));
    assert_truth(&pg, &fleet);
    assert_eq!(errs.iter().filter(|e| e.contains(&format!("prtip: fleet {fleet}: scanning shard"))).count(), 4);
    let status = common::run_ok(&mut lab.prtip(&["fleet", "status", "--postgres", &pg.url, "--fleet", &fleet]));
    let lines: Vec<&str> = status.lines().skip(1).collect();
    assert_eq!(lines.len(), 4, "{status}");
    assert!(lines.iter().all(|l| l.split_whitespace().nth(2) == Some("done")), "{status}");

    // A second fleet of one name is refused, and nothing of it written.
    let again =
        ["fleet", "create", "--postgres", &pg.url, "--shards", "2", "--name", "plain", "--", "-p", "1", "10.201.0.1"];
    let out = lab.prtip(&again).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert_eq!(
        stderr_of(&out),
        "prtip: error: PostgreSQL: a fleet named plain exists already: name this one otherwise\n"
    );
    assert_eq!(pg.query("SELECT count(*) FROM fleets"), "1");

    // The fleet reads as one scan: listed, exported, reported.
    let list = common::run_ok(&mut lab.prtip(&["db", "list", "--postgres", &pg.url]));
    let row = list
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("fleet:{fleet} ")))
        .unwrap_or_else(|| panic!("{list}"));
    let row: Vec<&str> = row.split_whitespace().collect();
    assert_eq!((row[2], &row[4..7]), ("completed", &["196608", "294912", "557056"][..]), "{list}");
    let export = ["db", "export", "fleet:plain", "--open", "-o", "csv", "--postgres", &pg.url];
    let csv = common::run_ok(&mut lab.prtip(&export));
    let open: std::collections::BTreeSet<(String, u16)> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f[4], "open", "{l}");
            (f[0].to_string(), f[1].parse().unwrap())
        })
        .collect();
    assert_eq!(open.len(), 196608);
    assert_eq!(csv.lines().count(), 196608 + 1);
    assert!(open.iter().all(|(ip, port)| ip.starts_with("10.201.") && OPEN.contains(port)));
    let report = common::run_ok(&mut lab.prtip(&["report", "fleet:plain", "--postgres", &pg.url]));
    assert!(report.starts_with("fleet plain: round trip (us)\n"), "{report}");
    let counts: Vec<(&str, &str)> = report
        .lines()
        .skip(2)
        .take_while(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0], f[1])
        })
        .collect();
    assert_eq!(counts, [("all", "491520"), ("open", "196608"), ("closed", "294912")], "{report}");

    // A worker killed mid-shard: its shard is taken over once its lease runs
    // out, from its checkpoint, into the scan it began.
    let fleet = create(&lab, &pg, "killed", "4", "3", &SWEEP, "1048576");
    let mut running = workers.start(&pg, &fleet, "15000");
    let started = format!(
        "SELECT shard, worker FROM fleet_shards WHERE fleet_id = {fleet} AND status = 'leased' \
         AND (checkpoint->>'position')::bigint > 0 ORDER BY shard LIMIT 1"
    );
    let mut found = String::new();
    common::wait_until("a shard with a checkpoint", || {
        found = pg.query(&started);
        !found.is_empty()
    });
    let (shard, worker) = found.split_once('|').unwrap();
    let pid = worker.rsplit(':').next().unwrap();
    let victim = running.iter().position(|w| w.pid().to_string() == pid).unwrap_or_else(|| panic!("{worker}"));
    let killed = running.remove(victim);
    killed.signal(libc::SIGKILL);
    killed.finish();
    let errs = all_finished(running);
    assert_truth(&pg, &fleet);
    let resumed = format!("prtip: fleet {fleet}: resuming shard {shard}/4 at probe ");
    assert_eq!(errs.iter().filter(|e| e.contains(&resumed)).count(), 1, "{errs:?}");
    let leases = pg.query(&format!("SELECT leases FROM fleet_shards WHERE fleet_id = {fleet} AND shard = {shard}"));
    assert_eq!(leases, "2");

    // PostgreSQL restarts while every worker scans: nothing is lost.
    let fleet = create(&lab, &pg, "restarted", "4", "60", &SWEEP, "1048576");
    let running = workers.start(&pg, &fleet, "30000");
    let checkpoints =
        format!("SELECT count(*) FROM fleet_shards WHERE fleet_id = {fleet} AND (checkpoint->>'position')::bigint > 0");
    common::wait_until("every shard under way", || pg.query(&checkpoints) == "4");
    pg.restart();
    all_finished(running);
    assert_truth(&pg, &fleet);

    // A worker killed before its shard's first checkpoint: the next goes on
    // in the scan it began, from the first probe, and stores nothing twice.
    let scan = ["-p", "1-16", "10.201.0.0/24", "--retries", "2"];
    let fleet = &create(&lab, &pg, "early", "1", "60", &scan, "4096");
    let first = workers.start_one(0, &pg, fleet, "500");
    let of_fleet = format!("scan_results r JOIN fleet_shards s ON s.scan_id = r.scan_id WHERE s.fleet_id = {fleet}");
    common::wait_until("results stored", || pg.query(&format!("SELECT count(*) FROM {of_fleet}")) != "0");
    first.signal(libc::SIGKILL);
    first.finish();
    // As if it had died before storing a checkpoint, and its lease ran out.
    pg.query(&format!("UPDATE fleet_shards SET checkpoint = NULL, lease_until = now() WHERE fleet_id = {fleet}"));
    let errs = all_finished(vec![workers.start_one(1, &pg, fleet, "30000")]);
    let resumed = format!("prtip: fleet {fleet}: resuming shard 1/1 at probe 0 of pass 0, after 0 probes and ");
    assert!(errs[0].contains(&resumed), "{errs:?}");
    let counts = format!(
        "SELECT r.state, count(*), count(DISTINCT (r.ip, r.port)) FROM {of_fleet} GROUP BY r.state ORDER BY r.state"
    );
    // 256 hosts x 6 open ports, x 9 closed ones.
    assert_eq!(pg.query(&counts), "closed|2304|2304\nopen|1536|1536");

    // A worker whose shard passed to another while it was stopped (its lease
    // ran out) stops probing it as soon as it learns so, and stores nothing
    // more: at its rate the whole shard, 4096 probes and the retries of the
    // dropped port, would take it 23 s.
    let fleet = &create(&lab, &pg, "overtaken", "1", "60", &scan, "4096");
    let syns_before = lab.target_counters()[FIRST_WORKER];
    let slow = workers.start_one(0, &pg, fleet, "200");
    let checkpointed = format!("SELECT count(*) FROM fleet_shards WHERE fleet_id = {fleet} AND checkpoint IS NOT NULL");
    common::wait_until("a checkpoint stored", || pg.query(&checkpointed) == "1");
    slow.signal(libc::SIGSTOP);
    pg.query(&format!("UPDATE fleet_shards SET lease_until = now() WHERE fleet_id = {fleet}"));
    let fast = workers.start_one(1, &pg, fleet, "30000");
    let leases = format!("SELECT leases FROM fleet_shards WHERE fleet_id = {fleet}");
    common::wait_until("the shard taken over", || pg.query(&leases) == "2");
    slow.signal(libc::SIGCONT);
    let errs = all_finished(vec![slow, fast]);
    let lost = "passed to another worker (this one missed its lease): its results are that worker's to store; taking the next shard";
    assert!(errs[0].contains(lost), "{errs:?}");
    assert!(errs[1].contains(&format!("prtip: fleet {fleet}: resuming shard 1/1 at probe ")), "{errs:?}");
    let of_fleet = format!("scan_results r JOIN fleet_shards s ON s.scan_id = r.scan_id WHERE s.fleet_id = {fleet}");
    let counts = format!(
        "SELECT r.state, count(*), count(DISTINCT (r.ip, r.port)) FROM {of_fleet} GROUP BY r.state ORDER BY r.state"
    );
    assert_eq!(pg.query(&counts), "closed|2304|2304\nopen|1536|1536");
    let probed = lab.target_counters()[FIRST_WORKER] - syns_before;
    assert!(probed < 2048, "the overtaken worker sent {probed} SYNs");
}
