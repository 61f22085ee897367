//! A delay line between the scanner and the target, for round-trip tests on
//! kernels without netem:
//!
//!   scanner ns: <p>0 10.200.0.1 --veth-- <p>m0 :middle ns: <p>m1 --veth-- <p>1 10.200.0.2 :target ns
//!
//! The middle namespace has no addresses; a forwarder there copies every
//! frame from one veth to the other with AF_PACKET sockets, holding the
//! target's frames back by the set delay. The forwarder itself adds a little
//! (microseconds), so tests measure against a run with no delay set.

use super::{in_netns, ip, run};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub struct DelayLab {
    pub scan_ns: String,
    pub middle_ns: String,
    pub target_ns: String,
    delay_us: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    sockets: [i32; 2],
    listeners: Vec<std::net::TcpListener>,
    /// prtip's XDG_STATE_HOME, removed with the lab.
    state: tempfile::TempDir,
}

fn packet_socket(ifname: &str) -> i32 {
    let c_name = std::ffi::CString::new(ifname).unwrap();
    // SAFETY: plain libc calls on values this function owns; results are checked.
    unsafe {
        let ifindex = libc::if_nametoindex(c_name.as_ptr());
        assert!(ifindex > 0, "no interface {ifname}");
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, (libc::ETH_P_ALL as u16).to_be() as i32);
        assert!(fd >= 0, "packet socket: {}", std::io::Error::last_os_error());
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex as i32;
        let rc = libc::bind(fd, &sll as *const _ as *const libc::sockaddr, size_of::<libc::sockaddr_ll>() as u32);
        assert_eq!(rc, 0, "bind {ifname}: {}", std::io::Error::last_os_error());
        // Our own transmissions on this interface are not frames to forward.
        let one: i32 = 1;
        let rc = libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_IGNORE_OUTGOING,
            &one as *const _ as *const libc::c_void,
            size_of::<i32>() as u32,
        );
        assert_eq!(rc, 0, "PACKET_IGNORE_OUTGOING: {}", std::io::Error::last_os_error());
        let timeout = libc::timeval { tv_sec: 0, tv_usec: 50_000 };
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &timeout as *const _ as *const libc::c_void,
            size_of::<libc::timeval>() as u32,
        );
        fd
    }
}

/// Copies frames from `from` to `to`, each sent `delay_us` after it arrived.
fn forward(from: i32, to: i32, delay_us: Option<Arc<AtomicU64>>, stop: Arc<AtomicBool>) -> Vec<JoinHandle<()>> {
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    let stop_rx = stop.clone();
    let receiver = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while !stop_rx.load(Ordering::Relaxed) {
            // SAFETY: buf is valid for its length.
            let n = unsafe { libc::recv(from, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
            if n <= 0 {
                continue;
            }
            let delay = delay_us.as_ref().map_or(0, |d| d.load(Ordering::Relaxed));
            let due = Instant::now() + Duration::from_micros(delay);
            if tx.send((due, buf[..n as usize].to_vec())).is_err() {
                return;
            }
        }
    });
    let sender = std::thread::spawn(move || {
        // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer slack.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1, 0, 0, 0) };
        while let Ok((due, frame)) = rx.recv() {
            // Sleep to just short of the due time, then spin: sleeps overshoot.
            let now = Instant::now();
            if due > now + Duration::from_micros(50) {
                std::thread::sleep(due - now - Duration::from_micros(50));
            }
            while Instant::now() < due {
                std::hint::spin_loop();
            }
            // SAFETY: frame is valid for its length.
            unsafe { libc::send(to, frame.as_ptr() as *const libc::c_void, frame.len(), 0) };
        }
    });
    vec![receiver, sender]
}

impl DelayLab {
    /// The three namespaces, with the target answering for 10.201.0.0/17 and
    /// listening on `open` ports; every other port is closed.
    pub fn new(open: &[u16]) -> DelayLab {
        super::require_root();
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let p = format!("pd{}{}", std::process::id() % 100_000, NEXT.fetch_add(1, Ordering::Relaxed));
        let (s, m, t) = (format!("{p}s"), format!("{p}m"), format!("{p}t"));
        let (sif, m0, m1, tif) = (format!("{p}0"), format!("{p}m0"), format!("{p}m1"), format!("{p}1"));
        for ns in [&s, &m, &t] {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&["link", "add", &sif, "netns", &s, "type", "veth", "peer", "name", &m0, "netns", &m]);
        ip(&["link", "add", &m1, "netns", &m, "type", "veth", "peer", "name", &tif, "netns", &t]);
        ip(&["-n", &s, "addr", "add", "10.200.0.1/24", "dev", &sif]);
        ip(&["-n", &t, "addr", "add", "10.200.0.2/24", "dev", &tif]);
        for (ns, dev) in [(&s, &sif), (&m, &m0), (&m, &m1), (&t, &tif)] {
            ip(&["-n", ns, "link", "set", dev, "up"]);
            // Frames cross the middle as plain bytes: their checksums must be complete.
            run(Command::new("ip").args(["netns", "exec", ns, "ethtool", "-K", dev, "tx", "off"]));
        }
        for dev in [&m0, &m1] {
            ip(&["-n", &m, "link", "set", dev, "promisc", "on"]);
        }
        ip(&["-n", &s, "route", "add", "10.201.0.0/16", "via", "10.200.0.2"]);
        ip(&["-n", &t, "route", "add", "local", "10.201.0.0/17", "dev", "lo"]);
        let mac = |ns: &str, dev: &str| -> String {
            let show = run(Command::new("ip").args(["-n", ns, "link", "show", "dev", dev]));
            let show = String::from_utf8_lossy(&show.stdout).into_owned();
            show.split_whitespace().skip_while(|w| *w != "link/ether").nth(1).unwrap().to_string()
        };
        // Fixed neighbours: no ARP through the delay line.
        ip(&["-n", &s, "neigh", "replace", "10.200.0.2", "lladdr", &mac(&t, &tif), "dev", &sif, "nud", "permanent"]);
        ip(&["-n", &t, "neigh", "replace", "10.200.0.1", "lladdr", &mac(&s, &sif), "dev", &tif, "nud", "permanent"]);

        let delay_us = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, b) = (m0.clone(), m1.clone());
        let (scan_side, target_side) = in_netns(&m, move || (packet_socket(&a), packet_socket(&b)));
        let mut threads = forward(scan_side, target_side, None, stop.clone());
        threads.extend(forward(target_side, scan_side, Some(delay_us.clone()), stop.clone()));
        let ports = open.to_vec();
        let listeners = in_netns(&t, move || {
            ports.iter().map(|p| std::net::TcpListener::bind(("0.0.0.0", *p)).unwrap()).collect::<Vec<_>>()
        });
        DelayLab {
            scan_ns: s,
            middle_ns: m,
            target_ns: t,
            delay_us,
            stop,
            threads,
            sockets: [scan_side, target_side],
            listeners,
            state: super::temp_dir(),
        }
    }

    /// Holds every frame from the target back by `delay` from now on.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_us.store(delay.as_micros() as u64, Ordering::Relaxed);
    }

    /// A prtip command that runs inside the scanner namespace.
    pub fn prtip(&self, args: &[&str]) -> Command {
        super::prtip_in(&self.scan_ns, self.state.path(), args)
    }
}

impl Drop for DelayLab {
    fn drop(&mut self) {
        self.listeners.clear();
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        for fd in self.sockets {
            // SAFETY: every thread that used the descriptors has ended.
            unsafe { libc::close(fd) };
        }
        for ns in [&self.scan_ns, &self.middle_ns, &self.target_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
