//! The command line: bad input is refused with one line and status 2, and
//! dry runs list exactly the probes a scan would send.
//!
//! Every prtip here runs in a network namespace of its own with no interface
//! up and no route (`unshare --net`): should a case wrongly pass validation,
//! its probes still cannot leave this machine.

mod common;

use common::{Running, path_in, temp_dir, wait_until};
use std::collections::BTreeSet;
use std::process::{Command, Output};

/// prtip in a fresh, empty network namespace, keeping checkpoints in `state`, out of the user's home.
fn isolated(state: &std::path::Path) -> Command {
    let mut c = Command::new("unshare");
    c.args(["--net", "--", env!("CARGO_BIN_EXE_prtip")]);
    c.env("XDG_STATE_HOME", state);
    c
}

/// Runs prtip to its end: one that hangs is killed after a minute, and fails its test.
fn prtip(args: &[&str]) -> Output {
    let state = temp_dir();
    let isolated = isolated(state.path());
    let mut c = Command::new("timeout");
    c.args(["-s", "KILL", "60"]).arg(isolated.get_program()).args(isolated.get_args()).args(args);
    c.envs(isolated.get_envs().filter_map(|(k, v)| Some((k, v?))));
    c.output().expect("unshare (util-linux) must be installed; the tests run as root")
}

/// A file `name` in `dir` holding `contents`, as an argument.
fn temp_file(dir: &tempfile::TempDir, name: &str, contents: &str) -> String {
    let path = path_in(dir, name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn bad_input_gets_one_line_and_status_2() {
    let dir = temp_dir();
    let bad_targets = temp_file(&dir, "bad-targets", "10.0.0.1\n10.0.0.300\n");
    let junk_checkpoint = temp_file(&dir, "junk.json", "{\"prtip_checkpoint\":1,\"arguments\":[\"-p\"]}");
    let outside = temp_file(
        &dir,
        "outside.json",
        r#"{"prtip_checkpoint":1,"arguments":["-p","80","10.0.0.1"],"seed":1,"hosts":[[167772161,167772161]],"pass":0,"position":5,"sent":0}"#,
    );
    let late = temp_file(
        &dir,
        "late.json",
        r#"{"prtip_checkpoint":1,"arguments":["-p","80","10.0.0.1"],"seed":1,"hosts":[[167772161,167772161]],"pass":7,"position":0,"sent":0}"#,
    );
    let stale_checkpoint = temp_file(
        &dir,
        "stale.json",
        r#"{"prtip_checkpoint":1,"arguments":["-p","80","--bogus","10.0.0.1"],"seed":1,"hosts":[[1,1]],"pass":0,"position":0,"sent":0}"#,
    );
    let forged = temp_file(
        &dir,
        "forged.json",
        r#"{"prtip_checkpoint":2,"arguments":["-p","80","--dry-run","10.0.0.1"],"seed":1,"hosts":[["10.0.0.1","10.0.0.1"]],"pass":0,"position":0,"sent":0}"#,
    );
    // A file given by mistake as a target list: its lines must not be echoed.
    let secrets = temp_file(&dir, "passwd", "root:x:0:0:root:/root:/bin/bash\n");
    let (db, same) = (path_in(&dir, "scan.db"), path_in(&dir, "same"));
    // A FIFO no process reads: opening it to write would wait for a reader.
    let fifo = path_in(&dir, "fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let cases: Vec<Vec<&str>> = vec![
        // targets
        vec!["10.0.0.256"],
        vec!["10.0.0.0/33"],
        vec!["10.0.0.5-10.0.0.1"],
        vec!["10.0.0.1/x"],
        vec!["1.2.3"],
        vec![""],
        vec!["host_name"],
        vec!["fd00::1/129"],
        vec!["fd00::g"],
        vec!["fe80::1%eth0"],
        vec!["fd00::1-ff"],
        vec!["10.0.0.1", "fd00::1"],
        vec!["2001:db8::/64"],
        vec!["-p", "80", "2000::/64"],
        vec!["-p", "80", "--retries", "2", "2000::/65"],
        vec!["--source-ip", "fd00::1", "10.0.0.1"],
        vec!["--source-ip", "10.0.0.1", "fd00::1"],
        vec!["-p", "80"],
        vec!["--exclude", "10.0.0.0/8", "10.1.2.3"],
        vec!["--exclude", "10.0.0.999", "10.1.2.3"],
        // ports
        vec!["-p", "0", "10.0.0.1"],
        vec!["-p", "65536", "10.0.0.1"],
        vec!["-p", "10-5", "10.0.0.1"],
        vec!["-p", "abc", "10.0.0.1"],
        vec!["-p", "80,", "10.0.0.1"],
        vec!["-p", "U:53", "10.0.0.1"],
        // flags
        vec!["--bogus", "10.0.0.1"],
        vec!["-sX", "10.0.0.1"],
        vec!["-s", "xmas", "10.0.0.1"],
        vec!["-sT", "--source-ip", "10.0.0.2", "10.0.0.1"],
        // probe modules: an echo has no port; payloads are UDP's, as hex, within a datagram
        vec!["-s", "icmp", "-p", "80", "10.0.0.1"],
        vec!["-sn", "--top-ports", "10", "10.0.0.1"],
        vec!["-sU", "--udp-payload", "53:zz", "10.0.0.1"],
        vec!["-sU", "--udp-payload", "53:abc", "10.0.0.1"],
        vec!["-sU", "--udp-payload", "0:00", "10.0.0.1"],
        vec!["-sU", "--udp-payload", "53", "10.0.0.1"],
        vec!["-sS", "--udp-payload", "53:00", "10.0.0.1"],
        vec!["-sU", "-p", "53", "--udp-payload", "99:00", "10.0.0.1"],
        vec!["-sU", "-p", "53", "--udp-payload", "53:00", "--udp-payload", "53:01", "10.0.0.1"],
        vec!["--top-ports", "0", "10.0.0.1"],
        vec!["--top-ports", "10", "-p", "80", "10.0.0.1"],
        vec!["--rate", "fast", "10.0.0.1"],
        vec!["--rate", "18446744073709551615", "10.0.0.1"],
        vec!["--retries", "99", "10.0.0.1"],
        vec!["--wait", "-1", "10.0.0.1"],
        vec!["--source-port", "0", "10.0.0.1"],
        vec!["--source-port", "5-1", "10.0.0.1"],
        vec!["--gateway-mac", "zz:zz", "10.0.0.1"],
        vec!["--source-ip", "10.0.0.0/24", "10.0.0.1"],
        vec!["--source-ip", "10.0.0.1-10.0.0.17", "10.0.0.1"],
        vec!["--source-ip", "10.0.0.1,10.0.0.2,10.0.0.1", "10.0.0.1"],
        vec!["--source-ip", "10.0.0.1,fd00::1", "10.0.0.1"],
        vec!["--source-ip", "10.0.0.1,localhost", "10.0.0.1"],
        vec!["--source-ip", "10.0.0.1,", "10.0.0.1"],
        vec!["--source-ip", "::/0", "fd00::1"],
        vec!["--source-ip", "0.0.0.0", "10.0.0.1"],
        vec!["--source-ip", "255.255.255.255", "10.0.0.1"],
        vec!["--source-ip", "10.0.0.2,224.0.0.1", "10.0.0.1"],
        vec!["--source-ip", "ff02::1", "fd00::1"],
        vec!["--transport", "dpdk", "10.0.0.1"],
        vec!["--queues", "0", "10.0.0.1"],
        vec!["--queues", "65", "10.0.0.1"],
        vec!["--queues", "2", "--transport", "raw", "10.0.0.1"],
        vec!["-o", "xml", "10.0.0.1"],
        vec!["--seed", "x", "10.0.0.1"],
        vec!["-q", "-v", "10.0.0.1"],
        vec!["--shard", "0/4", "10.0.0.1"],
        vec!["--shard", "5/4", "10.0.0.1"],
        vec!["--shard", "1-4", "10.0.0.1"],
        vec!["--max-probes", "99", "-p", "1-100", "10.0.0.1"],
        vec!["--max-open-per-host", "0", "10.0.0.1"],
        vec!["--max-open-per-host", "-3", "10.0.0.1"],
        vec!["--store-silent", "10.0.0.1"],
        vec!["--dry-run", "--with-db", "10.0.0.1"],
        vec!["--dry-run", "-oX", "/tmp/prtip-never.xml", "10.0.0.1"],
        vec!["--dry-run", "--latency-file", "/tmp/prtip-never.hgrm", "10.0.0.1"],
        vec!["--dry-run", "--open", "10.0.0.1"],
        vec!["--dry-run", "--transport", "raw", "10.0.0.1"],
        vec!["--dry-run", "--postgres", "postgresql://nobody@127.0.0.1:1/x", "10.0.0.1"],
        // banners: TCP scans only, and their flags only with --banners
        vec!["-sU", "--banners", "10.0.0.1"],
        vec!["-sn", "--banners", "10.0.0.1"],
        vec!["--banner-timeout", "2", "10.0.0.1"],
        vec!["--banners", "--banner-timeout", "0", "10.0.0.1"],
        vec!["--banners", "--banner-timeout", "nan", "10.0.0.1"],
        vec!["--banners", "--banner-bytes", "0", "10.0.0.1"],
        // files
        vec!["-iL", "/nonexistent/prtip-targets"],
        vec!["--exclude-file", "/nonexistent/prtip-exclude", "10.0.0.1"],
        vec!["-iL", &bad_targets],
        vec!["-iL", &secrets],
        vec!["--exclude-file", &secrets, "10.0.0.1"],
        // files with no end of line, and two lists on one standard input
        vec!["-iL", "/dev/zero"],
        vec!["--exclude-file", "/dev/zero", "10.0.0.1"],
        vec!["-iL", "-", "--exclude-file", "-", "10.0.0.1"],
        // files that cannot be written, or that two outputs would share
        vec!["-oN", "/nonexistent/prtip.nmap", "10.0.0.1"],
        vec!["--latency-file", "/nonexistent/prtip.hgrm", "10.0.0.1"],
        vec!["--with-db", "--database", "/nonexistent/prtip.db", "10.0.0.1"],
        vec!["--with-db", "--database", &db, "-oN", &db, "10.0.0.1"],
        vec!["--with-db", "--database", &db, "--latency-file", &db, "10.0.0.1"],
        vec!["-oX", &same, "-oG", &same, "10.0.0.1"],
        vec!["-oN", &fifo, "10.0.0.1"],
        vec!["--latency-file", &fifo, "10.0.0.1"],
        vec!["--with-db", "--database", &fifo, "10.0.0.1"],
        // the network named
        vec!["-i", "nosuchif", "10.0.0.1"],
        vec!["--gateway-mac", "ff:ff:ff:ff:ff:ff", "10.0.0.1"],
        vec!["--gateway-mac", "01:00:5e:00:00:01", "10.0.0.1"],
        vec!["--gateway-mac", "00:00:00:00:00:00", "10.0.0.1"],
        vec!["--wait", "0", "--retries", "2", "10.0.0.1"],
        // source ports in the kernel's own range (32768-60999 unless set otherwise)
        vec!["--source-port", "40000-40063", "10.0.0.1"],
        // checkpoints
        vec!["--resume", "/nonexistent/prtip.json"],
        vec!["--resume", &junk_checkpoint],
        vec!["--resume", &stale_checkpoint],
        vec!["--resume", &outside],
        vec!["--resume", &late],
        vec!["--resume", &forged],
        vec!["--resume", "7", "--database", "/nonexistent/prtip.db"],
        vec!["--resume", "--dry-run"],
    ];
    assert!(cases.len() >= 40);
    for args in &cases {
        let out = prtip(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("root:x"), "{args:?} echoed a file's contents: {err}");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?} printed more than one line: {err}");
        assert!(err.starts_with("prtip: "), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?} wrote to stdout");
    }
}

#[test]
fn help_and_version_succeed() {
    let help = prtip(&["--help"]);
    assert!(help.status.success());
    let text = String::from_utf8(help.stdout).unwrap();
    for opt in ["--ports", "--scan-type", "--input-list", "--exclude-file", "--rate", "--dry-run", "--open"] {
        assert!(text.contains(opt), "--help lacks {opt}");
    }
    assert!(prtip(&["--version"]).status.success());
}

fn dry_run_with_seed(seed: &str) -> Output {
    prtip(&[
        "--dry-run",
        "-o",
        "ndjson",
        "-p",
        "22,80-81",
        "10.9.0.0/30",
        "10.9.0.9",
        "--exclude",
        "10.9.0.1",
        "--seed",
        seed,
    ])
}

#[test]
fn dry_run_lists_every_probe_once_and_no_excluded_one() {
    let out = dry_run_with_seed("5");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let probes: Vec<(String, u64)> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let sport = v["sport"].as_u64().unwrap();
            assert!((61000..=61063).contains(&sport));
            (v["ip"].as_str().unwrap().to_string(), v["port"].as_u64().unwrap())
        })
        .collect();
    let unique: BTreeSet<_> = probes.iter().cloned().collect();
    assert_eq!(probes.len(), 12, "4 hosts x 3 ports");
    assert_eq!(unique.len(), 12);
    let hosts: BTreeSet<&str> = probes.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(hosts, BTreeSet::from(["10.9.0.0", "10.9.0.2", "10.9.0.3", "10.9.0.9"]));
    // The same seed gives the same order; another seed another.
    let again = dry_run_with_seed("5");
    assert_eq!(String::from_utf8(again.stdout).unwrap(), text);
    let other = dry_run_with_seed("6");
    assert_ne!(String::from_utf8(other.stdout).unwrap(), text);
}

#[test]
fn dry_run_of_a_large_space_streams_and_stops_at_a_closed_pipe() {
    // 16.7 M probes: the output is cut after a few lines and prtip must end at once, cleanly.
    let state = temp_dir();
    let mut child = isolated(state.path())
        .args(["--dry-run", "-p", "80", "10.0.0.0/8", "-q"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(first.starts_with("SYN 10."), "{first}");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn missing_privileges_name_the_capability() {
    // Run as nobody without capabilities: opening the raw socket must fail with a clear line.
    // Its own namespace with only loopback up: the route look-up succeeds, the socket does not.
    let script = format!(
        "ip link set lo up && exec setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all \
         --bounding-set=-all {} -p 80 127.0.0.1",
        env!("CARGO_BIN_EXE_prtip")
    );
    let out = Command::new("unshare")
        .args(["--net", "--", "sh", "-c", &script])
        .output()
        .expect("unshare and setpriv (util-linux) must be installed");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("CAP_NET_RAW"), "{err}");
    assert_eq!(err.lines().filter(|l| l.contains("error")).count(), 1, "{err}");
}

#[test]
fn hostnames_resolve_to_their_ipv4_addresses() {
    let out = prtip(&["--dry-run", "-o", "ndjson", "-p", "80", "localhost"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1);
    assert!(text.contains(r#""ip":"127.0.0.1","port":80"#), "{text}");
}

/// clap says what is missing or allowed on the lines below its first: the
/// one line keeps them.
#[test]
fn the_one_line_names_what_is_missing_or_allowed() {
    for (args, says) in [
        (vec!["report"], "required arguments were not provided: <SCAN_ID>"),
        (vec!["report", "1", "--top", "5"], "not provided: --by <GROUP>"),
        (vec!["db", "export", "1"], "not provided: --output-format <FORMAT>"),
        (vec!["--banner-timeout", "2", "10.0.0.1"], "not provided: --banners"),
        (vec!["--transport", "foo", "10.0.0.1"], "[possible values: auto, xdp, raw]"),
        (vec!["db"], "a subcommand is required (Read scans stored with --with-db: list,"),
    ] {
        let out = prtip(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn db_commands_refuse_what_is_not_there() {
    let dir = temp_dir();
    let missing = path_in(&dir, "missing.db");
    let elsewhere = "postgresql://nobody@127.0.0.1:1/x";
    for args in [
        vec!["db", "list", "--database", &missing],
        vec!["db", "frobnicate"],
        vec!["db", "show", "x"],
        // Two places to read from: neither is silently preferred.
        vec!["db", "list", "--database", &missing, "--postgres", elsewhere],
        vec!["db", "recover", "--database", &missing, "--postgres", elsewhere],
        vec!["report", "1", "--database", &missing, "--postgres", elsewhere],
        vec!["db", "merge", "--database", &missing, "out.db", "in.db"],
    ] {
        let out = prtip(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
    assert!(!std::path::Path::new(&missing).exists(), "a read command created a database");
}

fn dry_run_probes(args: &[&str]) -> Vec<(String, u64)> {
    let out = prtip(&[&["--dry-run", "-o", "ndjson", "-q"], args].concat());
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["ip"].as_str().unwrap().to_string(), v["port"].as_u64().unwrap())
        })
        .collect()
}

/// The hosts a dry run of `args` probes, each once.
fn dry_run_hosts(args: &[&str]) -> BTreeSet<String> {
    let probes = dry_run_probes(args);
    let hosts: BTreeSet<String> = probes.iter().map(|(ip, _)| ip.clone()).collect();
    assert_eq!(hosts.len(), probes.len(), "a host probed twice: {probes:?}");
    hosts
}

#[test]
fn exclusions_from_a_file_and_of_ipv6_keep_those_hosts_out() {
    let dir = temp_dir();
    let file = temp_file(&dir, "exclude.txt", "# not these\n10.9.0.0/30\n10.9.0.9, 10.9.0.12-10.9.0.13\n");
    let want = |last: &[u8]| last.iter().map(|h| format!("10.9.0.{h}")).collect::<BTreeSet<_>>();
    assert_eq!(
        dry_run_hosts(&["-p", "80", "10.9.0.0/28", "--exclude-file", &file]),
        want(&[4, 5, 6, 7, 8, 10, 11, 14, 15])
    );
    // The file and --exclude together.
    let both = dry_run_hosts(&["-p", "80", "10.9.0.0/28", "--exclude-file", &file, "--exclude", "10.9.0.4/31"]);
    assert_eq!(both, want(&[6, 7, 8, 10, 11, 14, 15]));
    let want6 = |last: &[&str]| last.iter().map(|h| format!("fd00:201::{h}")).collect::<BTreeSet<_>>();
    let v6 = dry_run_hosts(&["-p", "80", "fd00:201::/124", "--exclude", "fd00:201::/126,fd00:201::9"]);
    assert_eq!(v6, want6(&["4", "5", "6", "7", "8", "a", "b", "c", "d", "e", "f"]));
    let file6 = temp_file(&dir, "exclude6.txt", "fd00:201::8/125\n");
    assert_eq!(
        dry_run_hosts(&["-p", "80", "fd00:201::/124", "--exclude-file", &file6]),
        want6(&["", "1", "2", "3", "4", "5", "6", "7"])
    );
    // A list of both families serves a scan of either.
    let mixed = temp_file(&dir, "mixed.txt", "10.9.0.0/29\nfd00:201::/125\n");
    assert_eq!(
        dry_run_hosts(&["-p", "80", "10.9.0.0/28", "--exclude-file", &mixed]),
        want(&[8, 9, 10, 11, 12, 13, 14, 15])
    );
    let v6 = dry_run_hosts(&["-p", "80", "fd00:201::/124", "--exclude-file", &mixed]);
    assert_eq!(v6, want6(&["8", "9", "a", "b", "c", "d", "e", "f"]));
    // The dry run's summary counts what was left out.
    let out = prtip(&["--dry-run", "-p", "80", "fd00:201::/124", "--exclude", "fd00:201::/126,fd00:201::9"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("11 probes (11 hosts x 1 ports; 5 addresses excluded by --exclude)"), "{err}");
}

#[test]
fn shards_split_a_scan_exactly() {
    let scan = ["-p", "20-30,443", "10.20.0.0/26", "10.20.1.7", "--seed", "99"];
    let whole: BTreeSet<_> = dry_run_probes(&scan).into_iter().collect();
    assert_eq!(whole.len(), 65 * 12);
    for n in [2, 3, 7] {
        let mut union = BTreeSet::new();
        for i in 1..=n {
            let shard = format!("{i}/{n}");
            let part = dry_run_probes(&[&scan[..], &["--shard", &shard]].concat());
            for probe in part {
                assert!(union.insert(probe.clone()), "{probe:?} in two of {n} shards");
            }
        }
        assert_eq!(union, whole, "{n} shards");
    }
}

#[test]
fn special_purpose_ranges_are_skipped_unless_named() {
    // Crossing into loopback: only the ordinary half is probed.
    let probes = dry_run_probes(&["-p", "80", "126.255.255.0-127.0.0.255"]);
    assert_eq!(probes.len(), 256);
    assert!(probes.iter().all(|(ip, _)| ip.starts_with("126.255.255.")));
    // Named inside a special range: scanned as named.
    assert_eq!(dry_run_probes(&["-p", "80", "10.201.0.0/24"]).len(), 256);
    // Turned off: everything named.
    assert_eq!(dry_run_probes(&["-p", "80", "126.255.255.0-127.0.0.255", "--no-default-excludes"]).len(), 512);
    // The count for the whole space is computed, not enumerated.
    let out = prtip(&["--dry-run", "-p", "80", "0.0.0.0/0", "--max-probes", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("would send 3702258432 probes"), "{err}");
}

#[test]
fn ipv6_targets_are_listed_compressed_and_lose_only_special_parts() {
    let dir = temp_dir();
    let probes = dry_run_probes(&["-p", "80,443", "fd00:201::/126"]);
    let mut listed: Vec<String> = probes.iter().map(|(ip, port)| format!("[{ip}]:{port}")).collect();
    listed.sort();
    let hosts = ["fd00:201::", "fd00:201::1", "fd00:201::2", "fd00:201::3"];
    let mut want: Vec<String> = hosts.iter().flat_map(|h| [80, 443].map(|p| format!("[{h}]:{p}"))).collect();
    want.sort();
    assert_eq!(listed, want);
    // A target file of IPv6 prefixes, addresses and ranges, with comments.
    let file =
        temp_file(&dir, "v6-targets", "fd00:201::/127 # two\nfd00:202::9\nfd00:203::1-fd00:203::3, fd00:201::1\n");
    let probes = dry_run_probes(&["-p", "80", "-iL", &file]);
    assert_eq!(probes.len(), 6, "fd00:201::1, named twice, is probed once: {probes:?}");
    let from_file: BTreeSet<String> = probes.into_iter().map(|(ip, _)| ip).collect();
    let want = ["fd00:201::", "fd00:201::1", "fd00:202::9", "fd00:203::1", "fd00:203::2", "fd00:203::3"];
    assert_eq!(from_file, want.iter().map(|a| a.to_string()).collect());
    // Crossing into the documentation prefix: only the part before it is probed.
    let probes = dry_run_probes(&["-p", "80", "2001:db7:ffff:ffff:ffff:ffff:ffff:fff0-2001:db8::f"]);
    assert_eq!(probes.len(), 16);
    assert!(probes.iter().all(|(ip, _)| ip.starts_with("2001:db7:ffff:")), "{probes:?}");
    // Above 2^63 probes, retry passes included, a scan is refused with the count before anything is sent.
    for (retries, count) in [("0", "18446744073709551616"), ("1", "36893488147419103232")] {
        let out = prtip(&["--dry-run", "-p", "80", "--retries", retries, "2000::/64"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2));
        assert!(err.contains(&format!("would send {count} probes")), "{err}");
        assert!(err.contains("at most 2^63"), "{err}");
    }
    let out = prtip(&["--dry-run", "-q", "-p", "80", "--retries", "1", "2000::/66", "--max-probes", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("would send 4611686018427387904 probes, more than --max-probes 1"), "{err}");
}

#[test]
fn version_names_the_commit_and_the_transports() {
    let out = prtip(&["--version"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let rev = text.split("(git ").nth(1).and_then(|r| r.split(')').next()).expect(&text);
    assert!(rev.len() == 12 && rev.chars().all(|c| c.is_ascii_hexdigit()), "{text}");
    assert!(text.contains("transports: af_xdp (XDP program built in), raw"), "{text}");
}

#[test]
fn help_fits_80_columns_with_nmap_style_groups() {
    for args in [vec!["--help"], vec!["db", "--help"], vec!["report", "--help"], vec!["doctor", "--help"]] {
        let out = prtip(&args);
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        for line in text.lines() {
            assert!(line.chars().count() <= 80, "{args:?}: {} columns: {line}", line.chars().count());
        }
    }
    let help = String::from_utf8(prtip(&["--help"]).stdout).unwrap();
    let headings: Vec<&str> = help.lines().filter(|l| l.ends_with(':') && !l.starts_with(' ')).collect();
    assert_eq!(
        headings,
        [
            "Commands:",
            "Arguments:",
            "Options:",
            "Scan:",
            "Targets:",
            "Network:",
            "Timing:",
            "Output:",
            "Services:",
            "Storage:",
            "Output files:",
            "Examples:"
        ]
    );
}

/// Every long option of `prtip --help`.
fn long_options() -> BTreeSet<String> {
    let help = String::from_utf8(prtip(&["--help"]).stdout).unwrap();
    help.split_whitespace()
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()).to_string())
        .filter(|w| w.chars().skip(2).all(|c| c.is_ascii_lowercase() || c == '-'))
        .collect()
}

#[test]
fn the_manual_page_and_completions_cover_every_option() {
    let options = long_options();
    assert!(options.len() > 30 && options.contains("--rate") && options.contains("--output-all"), "{options:?}");
    let man = prtip(&["man"]);
    assert!(man.status.success());
    let man = String::from_utf8(man.stdout).unwrap();
    assert!(man.contains(".TH prtip 1"), "not roff");
    // roff escapes the dashes of an option as \-.
    for o in &options {
        assert!(man.contains(&o.replace('-', "\\-")), "the manual page lacks {o}");
    }
    for sub in ["db", "report", "doctor", "completions", "man"] {
        assert!(man.contains(&format!("prtip\\-{sub}")) || man.contains(&format!("\n{sub}")), "no {sub} in the manual");
    }
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = prtip(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        // fish writes options as `-l rate`; the others as `--rate`.
        for o in ["rate", "output-format", "database", "report", "doctor"] {
            assert!(script.contains(o), "{shell} completion lacks {o}");
        }
    }
    let out = prtip(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    let dir = temp_dir();
    // bash accepts what it is given.
    let path = temp_file(&dir, "completion.bash", &String::from_utf8(prtip(&["completions", "bash"]).stdout).unwrap());
    let check = Command::new("bash").args(["-n", &path]).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
}

/// A short loopback scan in an empty namespace, with `-v` flags and RUST_LOG as given.
fn logged_scan(flags: &str, rust_log: Option<&str>) -> String {
    let script = format!("ip link set lo up && exec {} -p 1-20 127.0.0.1 {flags}", env!("CARGO_BIN_EXE_prtip"));
    let state = temp_dir();
    let mut c = Command::new("unshare");
    c.args(["--net", "--", "sh", "-c", &script]).env_remove("RUST_LOG").env("XDG_STATE_HOME", state.path());
    if let Some(filter) = rust_log {
        c.env("RUST_LOG", filter);
    }
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn logs_follow_v_and_rust_log() {
    let count = |text: &str, level: &str| text.lines().filter(|l| l.contains(level)).count();
    let quiet = logged_scan("", None);
    assert_eq!(count(&quiet, " INFO ") + count(&quiet, " DEBUG "), 0, "{quiet}");
    let info = logged_scan("-v", None);
    assert!(count(&info, " INFO prtip::scan: path resolved") == 1 && count(&info, " DEBUG ") == 0, "{info}");
    let debug = logged_scan("-vv", None);
    assert!(count(&debug, " DEBUG prtip::engine::run: transmit lane") >= 1, "{debug}");
    let overridden = logged_scan("-vv", Some("off"));
    assert_eq!(count(&overridden, " DEBUG ") + count(&overridden, " INFO "), 0, "{overridden}");
    let chosen = logged_scan("", Some("prtip::store=debug,prtip::scan=info"));
    assert!(count(&chosen, " INFO prtip::scan") >= 1 && count(&chosen, "prtip::engine") == 0, "{chosen}");
}

#[test]
fn ctrl_c_ends_a_dry_run_of_the_whole_internet() {
    let state = temp_dir();
    let mut dry_run = Running::start(isolated(state.path()).args(["--dry-run", "-q", "-p", "80", "0.0.0.0/0"]));
    dry_run.wait_for_rows(1000);
    dry_run.signal(libc::SIGINT);
    wait_until("the dry run ends on Ctrl-C", || dry_run.ended());
    let out = dry_run.finish();
    assert_eq!(out.status.code(), Some(130));
    assert!(out.stdout.len() > 1000, "it was printing probes");
}

#[test]
fn a_scan_without_a_place_for_its_checkpoint_still_runs_and_says_so() {
    let dir = temp_dir();
    let xml = path_in(&dir, "nockpt.xml");
    let script = format!("ip link set lo up && exec {} -p 1-20 127.0.0.1 -oX {xml}", env!("CARGO_BIN_EXE_prtip"));
    let out = Command::new("unshare")
        .args(["--net", "--", "sh", "-c", &script])
        .env("XDG_STATE_HOME", "/proc/prtip-cannot-be-here")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("warning: no checkpoint was kept, so this scan cannot be resumed"), "{err}");
    assert!(std::fs::read_to_string(&xml).unwrap().contains("</nmaprun>"));
}
