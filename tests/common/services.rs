//! Real servers from Debian packages, run by the tests in a namespace of
//! their own making and stopped when dropped: the DNS, NTP and SNMP
//! servers that a UDP scan's payloads must make answer.

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server process; killed and reaped when dropped.
pub struct Service {
    name: &'static str,
    child: Child,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Service {
    /// Runs `program args` in namespace `ns`, in the foreground.
    fn start(name: &'static str, ns: &str, program: &str, args: &[&str], package: &str) -> Service {
        let child = Command::new("ip")
            .args(["netns", "exec", ns, program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program} (Debian package {package}) must be installed: {e}"));
        Service { name, child }
    }

    /// Fails the test if the server has exited (a bad configuration, a port taken).
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited: {status}", self.name);
        }
    }
}

/// dnsmasq answering DNS on `addrs` (which must be local addresses of `ns`)
/// from nothing but its own data: `version.bind` in class CHAOS.
pub fn dnsmasq(ns: &str, dir: &Path, addrs: &[&str]) -> Service {
    let pid = dir.join("dnsmasq.pid");
    let mut args = vec![
        "--keep-in-foreground".to_string(),
        "--conf-file=/dev/null".into(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--bind-interfaces".into(),
        "--user=root".into(),
        format!("--pid-file={}", pid.display()),
    ];
    args.extend(addrs.iter().map(|a| format!("--listen-address={a}")));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Service::start("dnsmasq", ns, "dnsmasq", &args, "dnsmasq-base")
}

/// chronyd serving time to anyone on `addrs` (one address per family),
/// from its local clock; it never sets this machine's clock (-x).
pub fn chronyd(ns: &str, dir: &Path, addrs: &[&str]) -> Service {
    let conf = dir.join("chrony.conf");
    let mut text = String::from("allow all\nlocal stratum 8\ncmdport 0\nbindcmdaddress /\n");
    text.push_str(&format!("pidfile {}\n", dir.join("chronyd.pid").display()));
    for a in addrs {
        text.push_str(&format!("bindaddress {a}\n"));
    }
    std::fs::write(&conf, text).unwrap();
    let conf = conf.display().to_string();
    Service::start("chronyd", ns, "chronyd", &["-d", "-x", "-u", "root", "-f", &conf], "chrony")
}

/// net-snmp's snmpd on `addrs` (`udp:A:161` and `udp6:[A]:161` forms),
/// with the read-only community `public`.
pub fn snmpd(ns: &str, dir: &Path, endpoints: &[&str]) -> Service {
    let conf = dir.join("snmpd.conf");
    std::fs::write(&conf, "rocommunity public default\nrocommunity6 public default\n").unwrap();
    let (conf, pid) = (conf.display().to_string(), dir.join("snmpd.pid").display().to_string());
    let mut args = vec!["-f", "-Lo", "-C", "-c", &conf, "-p", &pid];
    args.extend(endpoints);
    Service::start("snmpd", ns, "snmpd", &args, "snmpd")
}

/// Waits until `server` (`addr:port`) answers `request` from namespace
/// `ns`: the server is up and listening.
pub fn wait_for_answer(ns: &str, server: &str, request: &[u8]) {
    let (ns, server, request) = (ns.to_string(), server.to_string(), request.to_vec());
    super::in_netns(&ns, move || {
        let bind = if server.starts_with('[') { "[::]:0" } else { "0.0.0.0:0" };
        let socket = UdpSocket::bind(bind).unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let deadline = Instant::now() + super::READY_WITHIN;
        let mut buf = [0u8; 2048];
        loop {
            // Sent again each round: a datagram to a port not yet bound draws a port unreachable.
            let _ = socket.send_to(&request, &server);
            if socket.recv_from(&mut buf).is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "{server} did not answer within {:?}", super::READY_WITHIN);
        }
    });
}
