//! Real servers from Debian packages, run by the tests in a namespace of
//! their own making and stopped when dropped: the DNS, NTP and SNMP
//! servers that a UDP scan's payloads must make answer, and the SSH, FTP,
//! HTTP and HTTPS servers whose banners `--banners` must read.

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

/// OpenSSH's sshd on port 22 of every address of `ns`, with a host key made
/// for it in `dir`.
pub fn sshd(ns: &str, dir: &Path) -> Service {
    let key = dir.join("ssh_host_ed25519_key");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen (Debian package openssh-client) must be installed");
    assert!(made.success(), "ssh-keygen failed");
    let conf = dir.join("sshd_config");
    std::fs::write(
        &conf,
        format!(
            "Port 22\nListenAddress 0.0.0.0\nHostKey {}\nPidFile {}\nUsePAM no\n",
            key.display(),
            dir.join("sshd.pid").display()
        ),
    )
    .unwrap();
    // sshd refuses to start without its privilege separation directory.
    std::fs::create_dir_all("/run/sshd").unwrap();
    let conf = conf.display().to_string();
    Service::start("sshd", ns, "/usr/sbin/sshd", &["-D", "-e", "-f", &conf], "openssh-server")
}

/// vsftpd on port 21 of every address of `ns`, anonymous and read-only.
pub fn vsftpd(ns: &str, dir: &Path) -> Service {
    let empty = dir.join("vsftpd-empty");
    std::fs::create_dir_all(&empty).unwrap();
    let conf = dir.join("vsftpd.conf");
    std::fs::write(
        &conf,
        format!(
            "listen=YES\nlisten_ipv6=NO\nlisten_port=21\nbackground=NO\nanonymous_enable=YES\n\
             anon_root={0}\nlocal_enable=NO\nwrite_enable=NO\nseccomp_sandbox=NO\n\
             secure_chroot_dir={0}\nrun_as_launching_user=YES\nxferlog_enable=NO\n",
            empty.display()
        ),
    )
    .unwrap();
    let conf = conf.display().to_string();
    Service::start("vsftpd", ns, "/usr/sbin/vsftpd", &[&conf], "vsftpd")
}

/// nginx on `ns`: HTTP on `http` ports (a page titled `title` on the
/// first, a redirect to `/moved` on the others) and HTTPS on `https` ports
/// with a self-signed certificate for `prtip.test` made in `dir`, TLS 1.3
/// on the first and TLS 1.2 alone on the others; returns
/// the server and the certificate's SHA-256 fingerprint, as openssl gives it.
pub fn nginx(ns: &str, dir: &Path, http: &[u16], https: &[u16], title: &str) -> (Service, String) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj", "/CN=prtip.test/O=prtip"])
        .args(["-addext", "subjectAltName=DNS:prtip.test,IP:10.201.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl must be installed");
    assert!(made.success(), "openssl req failed");
    let fingerprint =
        Command::new("openssl").args(["x509", "-noout", "-fingerprint", "-sha256", "-in"]).arg(&cert).output().unwrap();
    let fingerprint = String::from_utf8_lossy(&fingerprint.stdout);
    let sha256 = fingerprint.trim().rsplit('=').next().unwrap().replace(':', "").to_lowercase();
    let page = format!("<html><head><title>{title}</title></head><body>prtip</body></html>");
    let mut servers = String::new();
    for (i, port) in http.iter().enumerate() {
        let answer = if i == 0 { format!("return 200 '{page}';") } else { "return 301 /moved;".to_string() };
        servers.push_str(&format!("server {{ listen {port}; default_type text/html; location / {{ {answer} }} }}\n"));
    }
    for (i, port) in https.iter().enumerate() {
        let versions = if i == 0 { "TLSv1.2 TLSv1.3" } else { "TLSv1.2" };
        servers.push_str(&format!(
            "server {{ listen {port} ssl; ssl_protocols {versions}; ssl_certificate {}; ssl_certificate_key {}; \
             default_type text/html; location / {{ return 200 '{page}'; }} }}\n",
            cert.display(),
            key.display()
        ));
    }
    let d = dir.display();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            // One process: killing it (as Service does) leaves no worker behind.
            "user root;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n{servers}}}\n"
        ),
    )
    .unwrap();
    let conf = conf.display().to_string();
    let server = Service::start("nginx", ns, "/usr/sbin/nginx", &["-c", &conf, "-g", "daemon off;"], "nginx-light");
    (server, sha256)
}

/// Waits until `addr` (`ip:port`) accepts TCP connections from namespace `ns`.
pub fn wait_for_listener(ns: &str, addr: &str) {
    let (ns, addr) = (ns.to_string(), addr.to_string());
    super::in_netns(&ns, move || {
        let deadline = Instant::now() + super::READY_WITHIN;
        let to: std::net::SocketAddr = addr.parse().unwrap();
        while std::net::TcpStream::connect_timeout(&to, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "{addr} did not accept within {:?}", super::READY_WITHIN);
            std::thread::sleep(Duration::from_millis(20));
        }
    });
}
