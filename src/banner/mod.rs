//! What answers on an open port: one conversation per port, as bytes in and
//! bytes out, free of sockets and clocks (the banner stage in
//! `engine::banners` does the I/O and keeps the time).
//!
//! A conversation listens first, as server-first protocols (SSH, FTP, SMTP,
//! POP3, IMAP, MySQL, VNC, telnet) speak at once; where the service stays
//! quiet it asks an HTTP request. Ports where clients speak first (HTTP)
//! are asked at once, and TLS ports get a handshake that records the
//! server's certificates, then HTTP inside it on HTTPS ports. What the
//! service says is identified by its first bytes, whatever the port; a
//! plain request answered as a TLS server would is asked again over TLS.

pub mod cert;
pub mod http;
pub mod identify;
pub mod tls;

use rustls::pki_types::ServerName;
use std::net::IpAddr;
pub use tls::Tls;

/// Ports whose services speak TLS from the first byte.
const TLS_PORTS: &[u16] = &[443, 465, 563, 636, 853, 990, 992, 993, 995, 4443, 5061, 6697, 8443, 9443, 10443];
/// TLS ports that serve HTTP inside.
const HTTPS_PORTS: &[u16] = &[443, 4443, 8443, 9443, 10443];
/// Ports where the client speaks first with HTTP.
const HTTP_PORTS: &[u16] = &[80, 81, 591, 8000, 8008, 8080, 8081, 8088, 8888];
/// The longest text kept of a header, title or product: real ones are
/// short, anything longer is noise or hostile.
const TEXT_MAX: usize = 256;

/// `text` cut to `TEXT_MAX` bytes, on a character boundary.
fn clip(mut text: String) -> String {
    if text.len() > TEXT_MAX {
        let cut = (0..=TEXT_MAX).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        text.truncate(cut);
    }
    text
}

/// The most bytes of a TLS handshake taken in (a long chain is 10-20 KiB).
const TLS_BYTES: usize = 64 * 1024;

/// How a port's conversation went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Status {
    /// The service said something, or showed a certificate.
    #[default]
    Grabbed,
    /// Connected, but nothing came back, not even to our request.
    Silent,
    /// The connection failed (error number): the port closed, or the host
    /// went away, between the scan and the banner stage.
    NoConnection(i32),
    /// The banner stage's queue was full: the port was never asked.
    QueueFull,
    /// The scan was stopped before the conversation ended.
    Interrupted,
    /// The peer acknowledged bytes never sent: a middlebox that answers
    /// for every port, not a service (seen by prtip's own TCP only).
    AcksEverything,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Grabbed => "grabbed",
            Status::Silent => "silent",
            Status::NoConnection(_) => "no-connection",
            Status::QueueFull => "queue-full",
            Status::Interrupted => "interrupted",
            Status::AcksEverything => "acks-everything",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        match text {
            "grabbed" => Some(Status::Grabbed),
            "silent" => Some(Status::Silent),
            "no-connection" => Some(Status::NoConnection(0)),
            "queue-full" => Some(Status::QueueFull),
            "interrupted" => Some(Status::Interrupted),
            "acks-everything" => Some(Status::AcksEverything),
            _ => None,
        }
    }
}

/// What a port's service showed of itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Service {
    pub status: Status,
    /// nmap's name for the protocol identified (`ssh`, `http`, ...).
    pub name: Option<String>,
    pub product: Option<String>,
    /// The first bytes the service sent (inside TLS where it spoke TLS), capped.
    pub banner: Vec<u8>,
    pub tls: Option<Tls>,
    pub http: Option<http::Head>,
}

impl Service {
    /// A port the stage never talked to.
    pub fn not_asked(status: Status) -> Service {
        Service { status, ..Service::default() }
    }
}

/// What the conversation wants done next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send these bytes, then read the answer (`Wait::Answer`).
    Send(Vec<u8>),
    Read(Wait),
    /// Close, connect again, and call `start` once connected.
    Reconnect,
    Done,
}

/// How long a read may stay empty, as the stage sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// For the service's first words, or its answer to ours.
    Answer,
    /// For the rest of a message already begun.
    Rest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    Listen,
    Http,
    Tls { https: bool },
}

/// One port's conversation.
pub struct Grab {
    plan: Plan,
    /// The HTTP Host header's value.
    host: String,
    server: ServerName<'static>,
    cap: usize,
    plain: Vec<u8>,
    asked: bool,
    reconnected: bool,
    handshake: Option<tls::Handshake>,
    tls_bytes: usize,
    tls: Option<Tls>,
    /// A TLS server ended the handshake: `plain` holds its record.
    refused_tls: bool,
}

impl Grab {
    /// A conversation with `port` of `ip` (named `hostname` where the
    /// target was given by name), keeping at most `cap` bytes of what it says.
    pub fn new(ip: IpAddr, port: u16, hostname: Option<&str>, cap: usize) -> Grab {
        let plan = if TLS_PORTS.contains(&port) {
            Plan::Tls { https: HTTPS_PORTS.contains(&port) }
        } else if HTTP_PORTS.contains(&port) {
            Plan::Http
        } else {
            Plan::Listen
        };
        let server =
            hostname.and_then(|h| ServerName::try_from(h.to_string()).ok()).unwrap_or(ServerName::IpAddress(ip.into()));
        let host = match hostname {
            Some(h) => http::host_header_name(h, port),
            None => http::host_header(ip, port),
        };
        Grab {
            plan,
            host,
            server,
            cap,
            plain: Vec::new(),
            asked: false,
            reconnected: false,
            handshake: None,
            tls_bytes: 0,
            tls: None,
            refused_tls: false,
        }
    }

    /// The connection is up.
    pub fn start(&mut self) -> Step {
        self.plain.clear();
        self.asked = false;
        match self.plan {
            Plan::Listen => Step::Read(Wait::Answer),
            Plan::Http => self.ask(),
            Plan::Tls { .. } => match tls::Handshake::new(self.server.clone()) {
                Ok(mut h) => {
                    let hello = h.outgoing();
                    self.handshake = Some(h);
                    Step::Send(hello)
                }
                Err(_) => Step::Done,
            },
        }
    }

    /// Sends our HTTP request, inside TLS where there is a handshake.
    fn ask(&mut self) -> Step {
        self.asked = true;
        let request = http::request(&self.host);
        match &mut self.handshake {
            Some(h) => {
                h.write(&request);
                Step::Send(h.outgoing())
            }
            None => Step::Send(request),
        }
    }

    pub fn on_data(&mut self, bytes: &[u8]) -> Step {
        match self.handshake.take() {
            Some(h) => self.on_tls(h, bytes),
            None => self.on_plain(bytes),
        }
    }

    fn on_plain(&mut self, bytes: &[u8]) -> Step {
        let room = self.cap.saturating_sub(self.plain.len());
        self.plain.extend_from_slice(&bytes[..bytes.len().min(room)]);
        if self.asked && !self.reconnected && self.plan != (Plan::Tls { https: true }) && speaks_tls(&self.plain) {
            self.plan = Plan::Tls { https: true };
            self.reconnected = true;
            return Step::Reconnect;
        }
        if self.plain.len() >= self.cap || self.complete() { Step::Done } else { Step::Read(Wait::Rest) }
    }

    fn on_tls(&mut self, mut h: tls::Handshake, bytes: &[u8]) -> Step {
        self.tls_bytes += bytes.len();
        let was_done = h.is_done();
        if h.receive(bytes).is_err() {
            // Not TLS at all (an SSH server on 443): what it said is its banner.
            if !was_done && self.tls_bytes == bytes.len() && !matches!(bytes.first(), Some(0x15 | 0x16)) {
                return self.on_plain(bytes);
            }
            self.tls = self.tls.take().or_else(|| h.shown());
            h.read(&mut self.plain, self.cap);
            // A TLS server that would not finish the handshake (an alert, a
            // version rustls does not speak): its record is what it said.
            if self.plain.is_empty() && self.tls.is_none() {
                self.refused_tls = true;
                self.plain.extend_from_slice(&bytes[..bytes.len().min(self.cap)]);
            }
            return Step::Done;
        }
        if !was_done && h.is_done() {
            self.tls = h.shown();
            if self.plan == (Plan::Tls { https: true }) {
                self.handshake = Some(h);
                return self.ask();
            }
        }
        h.read(&mut self.plain, self.cap);
        let out = h.outgoing();
        let done = h.is_done();
        self.handshake = Some(h);
        if self.tls_bytes > TLS_BYTES || self.plain.len() >= self.cap || (!self.plain.is_empty() && self.complete()) {
            return Step::Done;
        }
        match (out.is_empty(), done, self.plain.is_empty()) {
            (false, _, _) => Step::Send(out),
            (true, true, false) => Step::Read(Wait::Rest),
            (true, _, _) => Step::Read(Wait::Answer),
        }
    }

    /// A read stayed empty for its wait.
    pub fn on_quiet(&mut self) -> Step {
        let listening = self.handshake.as_ref().is_none_or(tls::Handshake::is_done);
        if self.plain.is_empty() && !self.asked && listening {
            return self.ask();
        }
        Step::Done
    }

    /// The service closed the connection (or reset it).
    pub fn on_closed(&mut self) -> Step {
        Step::Done
    }

    /// Whether what arrived is a whole first message of the protocol it is.
    fn complete(&self) -> bool {
        identify::identify(&self.plain).is_some_and(|id| identify::complete(id.name, &self.plain))
    }

    /// Whether what the service said filled the byte cap.
    pub fn is_full(&self) -> bool {
        self.plain.len() >= self.cap
    }

    /// What the conversation learnt.
    pub fn finish(self) -> Service {
        let identified = if self.refused_tls { None } else { identify::identify(&self.plain) };
        let http = identified.as_ref().filter(|id| id.name == "http").and_then(|_| http::parse(&self.plain));
        let status = if self.plain.is_empty() && self.tls.is_none() { Status::Silent } else { Status::Grabbed };
        let product = match (&identified, &http) {
            (Some(id), _) if id.product.is_some() => id.product.clone(),
            (_, Some(head)) => head.server.clone(),
            _ => None,
        };
        Service {
            status,
            name: identified
                .map(|id| id.name.to_string())
                .or_else(|| (self.tls.is_some() || self.refused_tls).then(|| "ssl".to_string())),
            product,
            banner: self.plain,
            tls: self.tls,
            http,
        }
    }
}

/// Whether a plain request was answered as a TLS server answers one: with a
/// TLS record (an alert), or nginx's 400 for plain HTTP on an HTTPS port.
fn speaks_tls(answer: &[u8]) -> bool {
    matches!(answer, [0x15 | 0x16, 0x03, ..])
        || answer
            .windows(b"plain HTTP request was sent to HTTPS port".len())
            .any(|w| w == b"plain HTTP request was sent to HTTPS port")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use std::io::{Read, Write};
    use std::process::Command;
    use std::sync::Arc;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));

    fn sent(step: Step) -> Vec<u8> {
        match step {
            Step::Send(bytes) => bytes,
            other => panic!("{other:?} where a send was due"),
        }
    }

    #[test]
    fn a_server_that_speaks_first_is_heard_out_and_named() {
        let mut g = Grab::new(IP, 2222, None, 4096);
        assert_eq!(g.start(), Step::Read(Wait::Answer));
        assert_eq!(g.on_data(b"SSH-2.0-OpenSSH_9.2p1 "), Step::Read(Wait::Rest));
        assert_eq!(g.on_data(b"Debian-2+deb12u3\r\n"), Step::Done);
        let s = g.finish();
        assert_eq!((s.status, s.name.as_deref()), (Status::Grabbed, Some("ssh")));
        assert_eq!(s.product.as_deref(), Some("OpenSSH_9.2p1 Debian-2+deb12u3"));
        assert_eq!(s.banner, b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n");
    }

    #[test]
    fn a_quiet_service_is_asked_in_http_and_what_it_says_is_capped() {
        let mut g = Grab::new(IP, 8800, None, 64);
        assert_eq!(g.start(), Step::Read(Wait::Answer));
        let request = sent(g.on_quiet());
        assert!(request.starts_with(b"GET / HTTP/1.1\r\nHost: 10.0.0.1:8800\r\n"), "{request:?}");
        let answer = b"HTTP/1.1 301 Moved Permanently\r\nServer: nginx\r\nLocation: http://x/moved\r\n";
        assert_eq!(g.on_data(answer), Step::Done, "64 bytes kept, and no more asked");
        let s = g.finish();
        assert_eq!(s.banner, &answer[..64]);
        assert_eq!(s.name.as_deref(), Some("http"));
        assert_eq!(s.http.map(|h| h.status), Some(301));
        // Asked once only: a service silent to our request too is silent.
        let mut g = Grab::new(IP, 8800, None, 64);
        g.start();
        sent(g.on_quiet());
        assert_eq!(g.on_quiet(), Step::Done);
        assert_eq!(g.finish().status, Status::Silent);
    }

    #[test]
    fn a_plain_request_answered_as_tls_servers_answer_it_is_asked_again_over_tls() {
        let mut g = Grab::new(IP, 8800, None, 4096);
        g.start();
        sent(g.on_quiet());
        let nginx = b"HTTP/1.1 400 Bad Request\r\n\r\n<title>400 The plain HTTP request was sent to HTTPS port</title>";
        assert_eq!(g.on_data(nginx), Step::Reconnect);
        assert_eq!(&sent(g.start())[..2], [0x16, 0x03], "a ClientHello");
        // Once only, whatever the second answer is.
        let mut g = Grab::new(IP, 8800, None, 4096);
        g.start();
        sent(g.on_quiet());
        assert_eq!(g.on_data(&[0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x46]), Step::Reconnect);
        g.start();
        assert_eq!(g.on_data(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"), Step::Done);
        assert_eq!(g.finish().http.map(|h| h.status), Some(400));
    }

    #[test]
    fn a_tls_server_that_refuses_the_handshake_is_named_ssl_with_its_alert_as_banner() {
        let mut g = Grab::new(IP, 443, None, 4096);
        assert_eq!(&sent(g.start())[..2], [0x16, 0x03], "a ClientHello");
        // protocol_version, fatal: a server that speaks only older TLS.
        let alert = [0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x46];
        assert_eq!(g.on_data(&alert), Step::Done);
        let s = g.finish();
        assert_eq!((s.status, s.name.as_deref()), (Status::Grabbed, Some("ssl")));
        assert_eq!((s.banner, s.tls, s.http), (alert.to_vec(), None, None));
    }

    /// Whatever a hostile peer sends, in whatever pieces, a conversation
    /// neither panics nor keeps more than its cap, and ends.
    #[test]
    fn hostile_bytes_never_panic_nor_outgrow_the_cap() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let starts: [&[u8]; 6] =
            [b"SSH-2.0-", b"HTTP/1.1 200 OK\r\n", b"220 ", &[0x16, 0x03, 0x03], &[0x15, 0x03], b"* OK"];
        for round in 0..3000 {
            let port = [22, 80, 443, 8800, 993, 2222][round % 6];
            let cap = 1 + (next() % 300) as usize;
            let mut g = Grab::new(IP, port, None, cap);
            let mut step = g.start();
            for _ in 0..20 {
                let mut bytes = starts[(next() % 6) as usize].to_vec();
                bytes.extend((0..next() % 700).map(|_| next() as u8));
                step = match (step, next() % 8) {
                    (Step::Done, _) => break,
                    (Step::Reconnect, _) => g.start(),
                    (_, 0) => g.on_quiet(),
                    (_, 1) => g.on_closed(),
                    _ => g.on_data(&bytes),
                };
            }
            let s = g.finish();
            assert!(s.banner.len() <= cap, "{} > {cap}", s.banner.len());
        }
    }

    /// A certificate for `prtip.test`, and its key, both DER, made by openssl.
    fn certificate(dir: &std::path::Path) -> (Vec<u8>, Vec<u8>) {
        let (cert, key) = (dir.join("c.der"), dir.join("k.pem"));
        let ok = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
            .args(["-days", "30", "-subj", "/CN=prtip.test", "-addext", "subjectAltName=DNS:prtip.test"])
            .args(["-outform", "DER", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl must be installed");
        assert!(ok.success());
        let der =
            Command::new("openssl").args(["pkcs8", "-topk8", "-nocrypt", "-outform", "DER", "-in"]).arg(&key).output();
        (std::fs::read(&cert).unwrap(), der.unwrap().stdout)
    }

    /// The whole conversation with a rustls server in memory: the handshake
    /// records the chain, and HTTP goes inside it on an HTTPS port.
    #[test]
    fn an_https_port_shows_its_certificate_and_its_http_head_inside_tls() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = certificate(dir.path());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
            )
            .unwrap();
        let mut server = rustls::ServerConnection::new(Arc::new(config)).unwrap();
        let mut g = Grab::new(IP, 443, Some("prtip.test"), 4096);
        let mut to_server = sent(g.start());
        let mut answered = false;
        for _ in 0..10 {
            server.read_tls(&mut to_server.as_slice()).unwrap();
            server.process_new_packets().unwrap();
            let mut request = Vec::new();
            let _ = server.reader().read_to_end(&mut request);
            if request.starts_with(b"GET / HTTP/1.1\r\nHost: prtip.test\r\n") && !answered {
                answered = true;
                let page =
                    b"HTTP/1.1 200 OK\r\nServer: test\r\nContent-Length: 34\r\n\r\n<html><title>inside</title></html>";
                server.writer().write_all(page).unwrap();
            }
            let mut to_client = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut to_client).unwrap();
            }
            match g.on_data(&to_client) {
                Step::Send(bytes) => to_server = bytes,
                Step::Read(_) => to_server = Vec::new(),
                Step::Done => break,
                Step::Reconnect => panic!("reconnect"),
            }
        }
        assert_eq!(server.server_name(), Some("prtip.test"), "SNI names the target's name");
        let s = g.finish();
        let tls = s.tls.expect("the handshake was recorded");
        assert_eq!(tls.version, "TLSv1.3");
        assert_eq!(tls.chain.len(), 1);
        assert_eq!(tls.chain[0].subject, "CN=prtip.test");
        assert_eq!(tls.chain[0].san, ["prtip.test"]);
        let http = s.http.expect("HTTP inside TLS");
        assert_eq!((http.status, http.title.as_deref()), (200, Some("inside")));
        assert_eq!(s.name.as_deref(), Some("http"));
    }
}
