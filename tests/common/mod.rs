//! A closed two-namespace network for integration tests, in the spirit of
//! ../shared/lab/lab.sh but owned by the test that builds it:
//!
//!   scanner ns: <p>0 10.200.0.1/24  --veth-- <p>1 10.200.0.2/24  :target ns
//!                    fd00:200::1/64          fd00:200::2/64
//!
//! The target namespace owns 10.201.0.0/17 and fd00:201::/113 (AnyIP local
//! routes), so its own kernel answers there; 10.201.128.0/17 and
//! fd00:201::8000/113 are routed to it but not local, and it drops those
//! probes silently. Listeners (dual stack by default) and nftables rules
//! (`table inet`, so both families) set which ports are open, closed or filtered.
//!
//! Everything is removed when the `Lab` is dropped, also when a test fails.

#![allow(dead_code)] // each test binary uses its own part of this module

pub mod delay;
pub mod postgres;
pub mod services;

use std::collections::BTreeSet;
use std::io::Read;
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const SCANNER_IP: &str = "10.200.0.1";
pub const SCANNER_IP6: &str = "fd00:200::1";
/// The target namespace's end of the veth: the scanner's IPv6 next hop.
pub const TARGET_IP6: &str = "fd00:200::2";
/// Routed to the target namespace: its kernel answers for the lower half,
/// fd00:201::/113, and silently drops the upper half, fd00:201::8000/113.
pub const TARGET_NET6: &str = "fd00:201::/112";

pub struct Lab {
    pub scan_ns: String,
    pub target_ns: String,
    pub scan_if: String,
    /// prtip's XDG_STATE_HOME, where checkpoints go: the lab's own, removed with it.
    pub state_dir: std::path::PathBuf,
    _state: tempfile::TempDir,
    listeners: Vec<Acceptor>,
    /// Scanner namespaces added to the lab (`add_scanner`).
    scanners: Vec<String>,
}

/// Listening sockets whose connections are accepted and closed at once, as
/// a server's are: a connect scan's handshakes must not fill their queues
/// (a full one drops the SYNs that follow, and open ports look filtered).
struct Acceptor {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Acceptor {
    fn new(listeners: Vec<TcpListener>) -> Acceptor {
        use std::sync::atomic::Ordering::Relaxed;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        for l in &listeners {
            l.set_nonblocking(true).unwrap();
        }
        let thread = std::thread::spawn(move || {
            while !flag.load(Relaxed) {
                let mut idle = true;
                for l in &listeners {
                    while let Ok((conn, _)) = l.accept() {
                        drop(conn);
                        idle = false;
                    }
                }
                if idle {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        Acceptor { stop, thread: Some(thread) }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Integration tests need root for namespaces and raw sockets. They fail
/// loudly without it rather than pass without having run.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "integration tests must run as root (they build network namespaces); run them with sudo");
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn ip(args: &[&str]) {
    run(Command::new("ip").args(args));
}

/// Runs `f` on a thread that has joined network namespace `ns`: sockets it
/// opens belong to that namespace, whichever thread uses them later.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        use std::os::fd::AsRawFd;
        // SAFETY: setns on a valid namespace descriptor changes only this thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("namespace thread panicked")
}

/// Waits until interface `ifname` of namespace `ns` is operationally up and
/// none of the namespace's IPv6 addresses is tentative. The kernel learns of
/// a veth's carrier up to a second after `link set up` (link events are
/// batched), and until then IPv6 on it answers nothing, not even neighbour
/// discovery: a scan started at once would find the next hop silent.
fn wait_until_up(ns: &str, ifname: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let link = run(Command::new("ip").args(["-n", ns, "-o", "link", "show", "dev", ifname]));
        let tentative = run(Command::new("ip").args(["-n", ns, "-6", "addr", "show", "tentative"]));
        if String::from_utf8_lossy(&link.stdout).contains("state UP") && tentative.stdout.is_empty() {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{ifname} in {ns} not up after 10 s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

impl Lab {
    /// Builds the two namespaces. `neighbour` adds a permanent neighbour entry
    /// for the target side; without it prtip has to resolve the next hop by ARP.
    pub fn new(neighbour: bool) -> Lab {
        Lab::build(neighbour, None, None, 1)
    }

    /// A lab whose veth pair has `queues` receive and transmit queues on each end.
    pub fn with_queues(queues: u32) -> Lab {
        Lab::build(true, None, None, queues)
    }

    /// A lab whose scanner interface is `scan_if` (interface names are per
    /// namespace, so `eth0` is fine) and whose router side has MAC `router_mac`.
    pub fn named(scan_if: &str, router_mac: &str) -> Lab {
        Lab::build(true, Some(scan_if), Some(router_mac), 1)
    }

    fn build(neighbour: bool, scan_if: Option<&str>, router_mac: Option<&str>, queues: u32) -> Lab {
        require_root();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let p = format!("pt{}{}", std::process::id() % 100_000, NEXT.fetch_add(1, Ordering::Relaxed));
        let state = temp_dir();
        let lab = Lab {
            scan_ns: format!("{p}s"),
            target_ns: format!("{p}t"),
            scan_if: scan_if.map_or_else(|| format!("{p}0"), str::to_string),
            state_dir: state.path().to_path_buf(),
            _state: state,
            listeners: Vec::new(),
            scanners: Vec::new(),
        };
        let tif = format!("{p}1");
        let (s, t) = (lab.scan_ns.as_str(), lab.target_ns.as_str());
        ip(&["netns", "add", s]);
        ip(&["netns", "add", t]);
        for ns in [s, t] {
            // Interfaces made from here on skip duplicate address detection, so
            // their addresses, link-local ones included, are usable at once.
            in_netns(ns, || std::fs::write("/proc/sys/net/ipv6/conf/default/accept_dad", "0").unwrap());
        }
        let q = queues.to_string();
        let qs = ["numtxqueues", &q, "numrxqueues", &q];
        let veth = [
            &["link", "add", &lab.scan_if][..],
            &qs,
            &["netns", s, "type", "veth", "peer", "name", &tif],
            &qs,
            &["netns", t],
        ];
        ip(&veth.concat());
        if let Some(mac) = router_mac {
            ip(&["-n", t, "link", "set", "dev", &tif, "address", mac]);
        }
        for ns in [s, t] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&["-n", s, "addr", "add", "10.200.0.1/24", "dev", &lab.scan_if]);
        ip(&["-n", t, "addr", "add", "10.200.0.2/24", "dev", &tif]);
        ip(&["-n", s, "addr", "add", "fd00:200::1/64", "dev", &lab.scan_if]);
        ip(&["-n", t, "addr", "add", "fd00:200::2/64", "dev", &tif]);
        ip(&["-n", s, "link", "set", &lab.scan_if, "up"]);
        ip(&["-n", t, "link", "set", &tif, "up"]);
        ip(&["-n", s, "route", "add", "10.201.0.0/16", "via", "10.200.0.2"]);
        ip(&["-n", t, "route", "add", "local", "10.201.0.0/17", "dev", "lo"]);
        ip(&["-n", s, "-6", "route", "add", "fd00:201::/64", "via", "fd00:200::2"]);
        ip(&["-n", t, "-6", "route", "add", "local", "fd00:201::/113", "dev", "lo"]);
        // Unlike IPv4, IPv6 with forwarding off still looks a non-local
        // destination up, finds no route and answers with an ICMPv6 "no route"
        // error; a blackhole route drops those probes without a word.
        ip(&["-n", t, "-6", "route", "add", "blackhole", "fd00:201::8000/113"]);
        if neighbour {
            let show = run(Command::new("ip").args(["-n", t, "link", "show", "dev", &tif]));
            let show = String::from_utf8_lossy(&show.stdout).into_owned();
            let mac = show
                .split_whitespace()
                .skip_while(|w| *w != "link/ether")
                .nth(1)
                .unwrap_or_else(|| panic!("no MAC in {show}"));
            for addr in ["10.200.0.2", "fd00:200::2"] {
                ip(&["-n", s, "neigh", "replace", addr, "lladdr", mac, "dev", &lab.scan_if, "nud", "permanent"]);
            }
        }
        in_netns(t, || {
            // ICMP errors must not be rate limited, or "filtered" would depend on timing.
            // The per-destination limits are per family; the global budget
            // (icmp_msgs_*) is shared by ICMP and ICMPv6.
            for (k, v) in [
                ("ipv4/icmp_ratelimit", "0"),
                ("ipv6/icmp/ratelimit", "0"),
                ("ipv4/icmp_msgs_per_sec", "1000000"),
                ("ipv4/icmp_msgs_burst", "1000000"),
            ] {
                std::fs::write(format!("/proc/sys/net/{k}"), v).unwrap();
            }
        });
        wait_until_up(s, &lab.scan_if);
        wait_until_up(t, &tif);
        lab
    }

    /// Adds scanner namespace `n` (1 to 254): a veth of its own to the
    /// target, 10.200.n.1/24 on its end, the target's /16 routed through
    /// it. Returns the namespace's name.
    pub fn add_scanner(&mut self, n: u8) -> String {
        let ns = format!("{}w{n}", self.scan_ns);
        let (ifs, ift) = (format!("{ns}a"), format!("{ns}b"));
        ip(&["netns", "add", &ns]);
        self.scanners.push(ns.clone());
        ip(&["link", "add", &ifs, "netns", &ns, "type", "veth", "peer", "name", &ift, "netns", &self.target_ns]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&["-n", &ns, "addr", "add", &format!("10.200.{n}.1/24"), "dev", &ifs]);
        ip(&["-n", &self.target_ns, "addr", "add", &format!("10.200.{n}.2/24"), "dev", &ift]);
        ip(&["-n", &ns, "link", "set", &ifs, "up"]);
        ip(&["-n", &self.target_ns, "link", "set", &ift, "up"]);
        ip(&["-n", &ns, "route", "add", "10.201.0.0/16", "via", &format!("10.200.{n}.2")]);
        wait_until_up(&ns, &ifs);
        wait_until_up(&self.target_ns, &ift);
        ns
    }

    /// Opens listening sockets on `ports` in the target namespace, answering on
    /// every local address of both families: a fresh namespace keeps
    /// net.ipv6.bindv6only at 0, so a socket bound to "::" takes IPv4 too.
    pub fn listen(&mut self, ports: &[u16]) {
        self.listen_in_target(ports, "::");
    }

    pub fn listen_in_target(&mut self, ports: &[u16], addr: &str) {
        let (ports, addr) = (ports.to_vec(), addr.to_string());
        let ls = in_netns(&self.target_ns, move || {
            ports.iter().map(|p| TcpListener::bind((addr.as_str(), *p)).unwrap()).collect::<Vec<_>>()
        });
        self.listeners.push(Acceptor::new(ls));
    }

    /// Opens listening sockets in the scanner namespace (for loopback scans).
    pub fn listen_in_scanner(&mut self, ports: &[u16], addr: &str) {
        let (ports, addr) = (ports.to_vec(), addr.to_string());
        let ls = in_netns(&self.scan_ns, move || {
            ports.iter().map(|p| TcpListener::bind((addr.as_str(), *p)).unwrap()).collect::<Vec<_>>()
        });
        self.listeners.push(Acceptor::new(ls));
    }

    /// Gives the target namespace's loopback `addr` (with its prefix) as an
    /// address of its own: servers that bind to interface addresses need it,
    /// where the kernel alone answers for the whole local route.
    pub fn add_target_address(&self, addr: &str) {
        ip(&["-n", &self.target_ns, "addr", "add", addr, "dev", "lo"]);
    }

    /// Gives the scanner's interface one more address (with its prefix).
    pub fn add_scanner_address(&self, addr: &str) {
        ip(&["-n", &self.scan_ns, "addr", "add", addr, "dev", &self.scan_if]);
    }

    /// Connections the target's kernel holds half open (SYN-RECV), of either family.
    pub fn half_open(&self) -> Vec<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.target_ns, "ss", "-Htn", "state", "syn-recv"])
            .output()
            .expect("ss (iproute2) must be installed");
        assert!(out.status.success(), "{}", stderr_of(&out));
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
    }

    /// The packet counter of each rule of `target_rules` that names a source
    /// address (`saddr ADDR ... counter`), by that address.
    pub fn target_counters(&self) -> std::collections::BTreeMap<String, u64> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.target_ns, "nft", "list", "table", "inet", "prtiptest"])
            .output()
            .expect("nft (package nftables) must be installed");
        assert!(out.status.success(), "{}", stderr_of(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        let after =
            |line: &str, word: &str| line.split_whitespace().skip_while(|w| *w != word).nth(1).map(str::to_string);
        text.lines().filter_map(|l| Some((after(l, "saddr")?, after(l, "packets")?.parse().ok()?))).collect()
    }

    /// Loads nftables rules (the body of an `input` filter chain) into the target namespace.
    pub fn target_rules(&self, rules: &str) {
        self.target_ruleset(&format!(
            "table inet prtiptest {{\n chain input {{\n  type filter hook input priority 0; policy accept;\n{rules}\n }}\n}}\n"
        ));
    }

    /// Sends every TCP SYN to `addr` on `ports` to the target's port
    /// `to`: a host that answers SYN-ACK on all of them, as an
    /// all-ports-open middlebox does, with a real TCP stack behind it.
    pub fn target_all_open(&self, addr: &str, ports: &str, to: u16) {
        self.target_ruleset(&format!(
            "table ip prtiptestnat {{\n chain pre {{\n  type nat hook prerouting priority -100; policy accept;\n  ip daddr {addr} tcp dport {ports} redirect to :{to}\n }}\n}}\n"
        ));
    }

    /// Loads an nftables ruleset into the target namespace.
    fn target_ruleset(&self, ruleset: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.target_ns, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nft (package nftables) must be installed");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(ruleset.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "nft: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A prtip command that runs inside the scanner namespace.
    pub fn prtip(&self, args: &[&str]) -> Command {
        prtip_in(&self.scan_ns, &self.state_dir, args)
    }

    /// `ip netns exec NS setpriv ... prtip ARGS` as `nobody`, with no
    /// capability and no usable home directory.
    pub fn as_nobody(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.scan_ns, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"])
            .args(["--inh-caps=-all", "--bounding-set=-all", env!("CARGO_BIN_EXE_prtip")])
            .args(args)
            .env_remove("XDG_STATE_HOME")
            .env("HOME", "/nonexistent");
        c
    }

    /// Starts prtip with `args`, its output read as it comes.
    pub fn start(&self, args: &[&str]) -> Running {
        Running::start(&mut self.prtip(args))
    }

    /// Runs prtip with `args`, stops it with SIGINT once it has printed
    /// `rows` result lines, and waits for it to end.
    pub fn interrupt_after_rows(&self, args: &[&str], rows: usize) -> Output {
        let mut run = self.start(args);
        run.wait_for_rows(rows);
        run.signal(libc::SIGINT);
        run.finish()
    }

    /// The checkpoint file (not its results file) of the scan in the lab's state directory.
    pub fn checkpoint_file(&self) -> Option<std::path::PathBuf> {
        self.checkpoints().into_iter().find(|p| p.extension().is_some_and(|e| e == "json"))
    }

    /// The checkpoint files prtip left in the lab's state directory.
    pub fn checkpoints(&self) -> Vec<std::path::PathBuf> {
        let dir = self.state_dir.join("prtip");
        let mut v: Vec<_> =
            std::fs::read_dir(&dir).map_or_else(|_| Vec::new(), |d| d.map(|e| e.unwrap().path()).collect());
        v.sort();
        v
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.listeners.clear();
        for ns in [&self.scan_ns, &self.target_ns].into_iter().chain(&self.scanners) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A prtip command that runs in namespace `ns`, keeping its checkpoints in `state_dir`.
pub fn prtip_in(ns: &str, state_dir: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_prtip")]).args(args);
    c.env("XDG_STATE_HOME", state_dir);
    c
}

/// Runs `cmd`, which must succeed; its standard output.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", stderr_of(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// One parsed ndjson result line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Row {
    pub ip: String,
    pub port: u16,
    pub state: String,
    pub reason: String,
    pub ttl: Option<u8>,
    pub rtt_us: Option<u64>,
}

/// Parses prtip's ndjson output of a TCP scan with a JSON parser, so a malformed line fails the test.
pub fn rows(stdout: &[u8]) -> Vec<Row> {
    rows_of(stdout, "tcp")
}

/// Parses prtip's ndjson output of a scan of protocol `proto` (`tcp`,
/// `udp`, or `icmp`, whose rows have no port: 0 here).
pub fn rows_of(stdout: &[u8], proto: &str) -> Vec<Row> {
    let text = std::str::from_utf8(stdout).expect("utf-8 output");
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("bad json {line:?}: {e}"));
            assert_eq!(v["proto"], proto, "{line}");
            assert!(v["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{line}");
            assert_eq!(v.get("port").is_none(), proto == "icmp", "a port where the protocol has one: {line}");
            Row {
                ip: v["ip"].as_str().unwrap().to_string(),
                port: v["port"].as_u64().unwrap_or(0) as u16,
                state: v["state"].as_str().unwrap().to_string(),
                reason: v["reason"].as_str().unwrap().to_string(),
                ttl: v["ttl"].as_u64().map(|t| t as u8),
                rtt_us: v["rtt_us"].as_u64(),
            }
        })
        .collect()
}

pub fn ports_in(rows: &[Row], state: &str) -> Vec<u16> {
    let mut v: Vec<u16> = rows.iter().filter(|r| r.state == state).map(|r| r.port).collect();
    v.sort();
    v
}

/// The open ports of the one-host target (10.201.0.1) that `one_host_target` sets up.
pub const ONE_HOST_OPEN: [u16; 6] = [1, 22, 443, 8080, 31337, 65535];

/// 10.201.0.1: `ONE_HOST_OPEN` open, 7000 silently dropped, 7001 answered with
/// ICMP admin-prohibited, every other port closed.
pub fn one_host_target(lab: &mut Lab) {
    lab.listen(&ONE_HOST_OPEN);
    lab.target_rules(
        "ip daddr 10.201.0.1 tcp dport 7000 drop\n\
         ip daddr 10.201.0.1 tcp dport 7001 reject with icmp type admin-prohibited",
    );
}

/// A full port scan of `one_host_target` found exactly its truth, once per port.
pub fn assert_one_host_truth(rows: &[Row]) {
    assert_one_host_truth_of(rows, "10.201.0.1");
}

/// A full port scan of `ip`, set up as `one_host_target` sets up 10.201.0.1,
/// found exactly that truth, once per port.
pub fn assert_one_host_truth_of(rows: &[Row], ip: &str) {
    assert_eq!(ports_in(rows, "open"), ONE_HOST_OPEN);
    assert_eq!(ports_in(rows, "filtered"), [7000, 7001]);
    assert_eq!(ports_in(rows, "closed").len(), 65535 - ONE_HOST_OPEN.len() - 2);
    assert_eq!(rows.len(), 65535, "one row per port");
    let unique: std::collections::BTreeSet<u16> = rows.iter().map(|r| r.port).collect();
    assert_eq!(unique.len(), 65535, "no port reported twice");
    assert!(rows.iter().all(|r| r.ip == ip), "rows for another address than {ip}");
    let reason = |p: u16| rows.iter().find(|r| r.port == p).unwrap().reason.clone();
    assert_eq!(reason(7000), "no-response");
    assert_eq!(reason(7001), "admin-prohibited");
    assert_eq!(reason(22), "syn-ack");
    assert_eq!(reason(80), "reset");
}

/// 10.201.0.0/16 port 80: in the target's own 10.201.0.0/17, open where the
/// last octet is a multiple of 16 and closed elsewhere; the upper /17 is
/// routed to the target but not local, so its probes are dropped silently.
pub fn sweep_target(lab: &mut Lab) {
    lab.listen(&[80]);
    lab.target_rules("tcp dport 80 ip daddr & 0.0.0.15 != 0.0.0.0 reject with tcp reset");
}

/// A port-80 sweep of `sweep_target` found exactly its open, closed and filtered hosts.
pub fn assert_sweep_truth(rows: &[Row]) {
    use std::collections::BTreeSet;
    use std::net::Ipv4Addr;
    assert_eq!(rows.len(), 65536);
    let hosts = |state: &str| -> BTreeSet<Ipv4Addr> {
        rows.iter().filter(|r| r.state == state).map(|r| r.ip.parse().unwrap()).collect()
    };
    let local = |a: &Ipv4Addr| a.octets()[2] < 128;
    let expected_open: BTreeSet<Ipv4Addr> =
        (0..32768u32).map(|i| Ipv4Addr::from(0x0ac9_0000 + i)).filter(|a| a.octets()[3] % 16 == 0).collect();
    assert_eq!(hosts("open"), expected_open);
    let closed = hosts("closed");
    assert_eq!(closed.len(), 32768 - 2048);
    assert!(closed.iter().all(|a| local(a) && a.octets()[3] % 16 != 0));
    let filtered = hosts("filtered");
    assert_eq!(filtered.len(), 32768);
    assert!(filtered.iter().all(|a| !local(a)));
}

/// How long a test waits for a scan to reach the point it needs: far longer
/// than any step takes, so that only a step that never comes fails the wait,
/// however busy the machine is.
pub const READY_WITHIN: Duration = Duration::from_secs(30);

/// Polls `ready` until it holds; fails the test after `READY_WITHIN`.
pub fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + READY_WITHIN;
    while !ready() {
        assert!(Instant::now() < deadline, "not within {READY_WITHIN:?}: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One output stream of a running prtip, collected as it comes.
#[derive(Clone, Default)]
struct Collected {
    bytes: Arc<Mutex<Vec<u8>>>,
    lines: Arc<AtomicUsize>,
}

impl Collected {
    fn read_from(&self, mut from: impl Read + Send + 'static) -> std::thread::JoinHandle<()> {
        let me = self.clone();
        std::thread::spawn(move || {
            let mut chunk = vec![0; 1 << 16];
            while let Ok(n @ 1..) = from.read(&mut chunk) {
                me.bytes.lock().unwrap().extend_from_slice(&chunk[..n]);
                me.lines.fetch_add(chunk[..n].iter().filter(|&&b| b == b'\n').count(), Ordering::Relaxed);
            }
        })
    }

    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut self.bytes.lock().unwrap())
    }
}

/// A prtip the test acts on while it runs: it waits for what the scan has
/// printed or stored, not for time to pass, before it signals it.
pub struct Running {
    child: Child,
    stdout: Collected,
    stderr: Collected,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Running {
    pub fn start(cmd: &mut Command) -> Running {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let (stdout, stderr) = (Collected::default(), Collected::default());
        let readers =
            vec![stdout.read_from(child.stdout.take().unwrap()), stderr.read_from(child.stderr.take().unwrap())];
        Running { child, stdout, stderr, readers }
    }

    /// Complete lines printed on standard output so far.
    pub fn lines(&self) -> usize {
        self.stdout.lines.load(Ordering::Relaxed)
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.bytes.lock().unwrap()).into_owned()
    }

    /// Waits until `ready` holds; fails the test if prtip ends first.
    pub fn wait_until(&mut self, what: &str, mut ready: impl FnMut(&Running) -> bool) {
        wait_until(what, || {
            if ready(self) {
                return true;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("prtip ended ({status}) before {what}: {}", self.stderr());
            }
            false
        });
    }

    /// Waits until standard output has `n` complete lines.
    pub fn wait_for_rows(&mut self, n: usize) {
        self.wait_until(&format!("{n} lines printed"), |r| r.lines() >= n);
    }

    /// Waits until standard error has a line that `line` accepts.
    pub fn wait_for_stderr(&mut self, what: &str, line: impl Fn(&str) -> bool) {
        self.wait_until(what, |r| r.stderr().lines().any(&line));
    }

    /// Whether prtip has ended.
    pub fn ended(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: i32) {
        // `ip netns exec` and `unshare` run prtip in place of themselves, so the child is prtip.
        // SAFETY: plain kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Waits for prtip to end; everything it printed.
    pub fn finish(mut self) -> Output {
        let status = self.child.wait().unwrap();
        for r in std::mem::take(&mut self.readers) {
            r.join().unwrap();
        }
        Output { status, stdout: self.stdout.take(), stderr: self.stderr.take() }
    }
}

impl Drop for Running {
    /// A test that failed while prtip ran does not leave it scanning (or its
    /// XDP program attached) into the next test.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A directory of the test's own, removed when dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("prtip-test-").tempdir().unwrap()
}

/// `name` in `dir`, as an argument.
pub fn path_in(dir: &tempfile::TempDir, name: &str) -> String {
    dir.path().join(name).to_str().unwrap().to_string()
}

/// The answer of the sqlite3 shell to `query` on database `db`, trimmed.
pub fn sql(db: &str, query: &str) -> String {
    try_sql(db, query).unwrap_or_else(|e| panic!("sqlite3 {query}: {e}"))
}

/// As `sql`, for a database a running scan writes, which may be busy a moment.
pub fn try_sql(db: &str, query: &str) -> Result<String, String> {
    let out = Command::new("sqlite3").args([db, query]).output().expect("sqlite3 must be installed");
    match out.status.success() {
        true => Ok(String::from_utf8(out.stdout).unwrap().trim().to_string()),
        false => Err(stderr_of(&out)),
    }
}

/// Fails the test unless `path` is XML that nmap's own DTD accepts.
pub fn assert_valid_nmap_xml(path: &str) {
    let out = Command::new("xmllint")
        .args(["--noout", "--dtdvalid", "/usr/share/nmap/nmap.dtd", path])
        .output()
        .expect("xmllint (libxml2-utils) and nmap's DTD must be installed");
    assert!(out.status.success(), "{path} is not valid nmap XML: {}", stderr_of(&out));
}

/// Fails with a few of the differences when `got` is not `want`; sets of
/// 65536 entries are too long to print whole.
fn assert_same<T: Ord + std::fmt::Debug>(what: &str, want: &BTreeSet<T>, got: &BTreeSet<T>) {
    let missing: Vec<&T> = want.difference(got).take(5).collect();
    let extra: Vec<&T> = got.difference(want).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what} differs from standard output ({} entries, {} printed): lacks {missing:?}..., adds {extra:?}...",
        got.len(),
        want.len()
    );
}

/// What each result says, whichever format carries it: (ip, port, state, reason).
fn said(rows: &[Row], what: &str) -> BTreeSet<(String, u16, String, String)> {
    let set: BTreeSet<_> = rows.iter().map(|r| (r.ip.clone(), r.port, r.state.clone(), r.reason.clone())).collect();
    assert_eq!(set.len(), rows.len(), "{what} reports a port twice");
    set
}

/// What a per-host report (XML, grepable) shows of `rows`, by nmap's rule:
/// one entry per host, each open port listed, any other state summarised
/// with its count and the reason of its lowest port when it covers more
/// than 25 ports of the host, listed otherwise. `reasons` false leaves the
/// reasons out, as the grepable format does.
fn per_host(rows: &[Row], reasons: bool) -> BTreeSet<String> {
    let mut hosts: std::collections::BTreeMap<&str, Vec<&Row>> = Default::default();
    for r in rows {
        hosts.entry(&r.ip).or_default().push(r);
    }
    let reason = |r: &Row| if reasons { r.reason.clone() } else { String::new() };
    let mut shown = BTreeSet::new();
    for (ip, mut ports) in hosts {
        ports.sort_by_key(|r| r.port);
        shown.insert(format!("host {ip}"));
        let count = |s: &str| ports.iter().filter(|r| r.state == s).count();
        for s in ["closed", "filtered", "undecided"].into_iter().filter(|s| count(s) > 25) {
            let lowest = ports.iter().find(|r| r.state == s).unwrap();
            shown.insert(format!("{ip} {s} x{} {}", count(s), reason(lowest)));
        }
        for r in ports.iter().filter(|r| r.state == "open" || count(&r.state) <= 25) {
            shown.insert(format!("{ip} {} {} {}", r.port, r.state, reason(r)));
        }
    }
    shown
}

/// The value of attribute `name` in one line of XML.
fn attr<'a>(line: &'a str, name: &str) -> &'a str {
    let key = format!(" {name}=\"");
    let at = line.find(&key).unwrap_or_else(|| panic!("no {name} in {line}")) + key.len();
    &line[at..at + line[at..].find('"').unwrap()]
}

/// What prtip's XML (one element a line) shows, as `per_host` puts it.
fn xml_shows(xml: &str) -> BTreeSet<String> {
    let mut shown = BTreeSet::new();
    let mut ip = String::new();
    let mut lines = xml.lines();
    while let Some(line) = lines.next() {
        let fresh = if line.starts_with("<address ") {
            ip = attr(line, "addr").to_string();
            shown.insert(format!("host {ip}"))
        } else if line.starts_with("<extraports ") {
            let reasons = lines.next().unwrap();
            let (state, count) = (attr(line, "state"), attr(line, "count"));
            assert_eq!(attr(reasons, "count"), count, "{reasons}");
            shown.insert(format!("{ip} {state} x{count} {}", attr(reasons, "reason")))
        } else if line.starts_with("<port ") {
            let (port, state, reason) = (attr(line, "portid"), attr(line, "state"), attr(line, "reason"));
            shown.insert(format!("{ip} {port} {state} {reason}"))
        } else {
            true
        };
        assert!(fresh, "said twice in the XML: {line} (host {ip})");
    }
    shown
}

/// What prtip's grepable report shows, as `per_host` puts it without reasons.
fn grepable_shows(gnmap: &str) -> BTreeSet<String> {
    let mut shown = BTreeSet::new();
    for line in gnmap.lines().filter(|l| l.starts_with("Host: ")) {
        let mut fields = line.split('\t');
        let ip = fields.next().unwrap().strip_prefix("Host: ").unwrap().strip_suffix(" ()").unwrap();
        let mut said = vec![format!("host {ip}")];
        let ports = fields.next().unwrap().strip_prefix("Ports: ").unwrap();
        for p in ports.split(", ").filter(|p| !p.is_empty()) {
            let f: Vec<&str> = p.split('/').collect();
            assert_eq!((f.len(), f[2], f[3], &f[5..]), (8, "tcp", "", &["", "", ""][..]), "{p}");
            said.push(format!("{ip} {} {} ", f[0], f[1]));
        }
        for ignored in fields {
            let (state, count) = ignored.strip_prefix("Ignored State: ").unwrap().split_once(" (").unwrap();
            said.push(format!("{ip} {state} x{} ", count.strip_suffix(')').unwrap()));
        }
        for s in said {
            assert!(shown.insert(s), "said twice in the grepable file: {line}");
        }
    }
    shown
}

/// The files `-oA base` wrote hold exactly the results standard output
/// printed (`printed`: of every run, for a resumed scan): the JSON and CSV
/// files the same (ip, port, state, reason) set, each once; the XML and
/// grepable reports the same hosts with the same ports listed and
/// summarised; and the XML passes nmap's DTD.
pub fn assert_files_hold(base: &str, printed: &[Row]) {
    let want = said(printed, "standard output");
    let read = |ext: &str| std::fs::read_to_string(format!("{base}.{ext}")).unwrap();
    assert_same("the JSON file", &want, &said(&rows(read("json").as_bytes()), "the JSON file"));
    let csv = read("csv");
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("ip,port,proto,service,state,reason,ttl,rtt_us,time"));
    let csv: Vec<Row> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!((f.len(), f[2]), (9, "tcp"), "{l}");
            let (port, ttl, rtt_us) = (f[1].parse().unwrap(), f[6].parse().ok(), f[7].parse().ok());
            Row { ip: f[0].into(), port, state: f[4].into(), reason: f[5].into(), ttl, rtt_us }
        })
        .collect();
    assert_same("the CSV file", &want, &said(&csv, "the CSV file"));
    assert_same("the XML file", &per_host(printed, true), &xml_shows(&read("xml")));
    assert_valid_nmap_xml(&format!("{base}.xml"));
    assert_same("the grepable file", &per_host(printed, false), &grepable_shows(&read("gnmap")));
}
