//! Round-trip times: measured against a known injected delay through both
//! transports, then stored, reported, compared and plotted.

mod common;

use common::delay::DelayLab;
use common::{Lab, Row, one_host_target, path_in, rows, stderr_of, temp_dir};
use std::process::Command;
use std::time::Duration;

/// Timing is measured on two shared cores: the tests of this file take turns.
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Every tenth port of 1-2000 is open on the delay lab's target; the rest are closed.
fn delay_lab_open() -> Vec<u16> {
    (1..=200).map(|i| i * 10).collect()
}

/// The shortest round trip of `state`'s replies: the one least delayed by
/// the scheduling of the delay line's threads and the scanner's on two shared
/// cores, where a median can move by a millisecond while another process runs.
fn fastest(rows: &[Row], state: &str) -> u64 {
    rows.iter()
        .filter(|r| r.state == state)
        .map(|r| r.rtt_us.expect("every reply is timed"))
        .min()
        .unwrap_or_else(|| panic!("no {state} replies"))
}

/// Scans the delay lab's target once; returns the fastest round trip of SYN-ACKs and of RSTs.
fn fastest_round_trips(lab: &DelayLab, transport: &str, delay: Duration) -> (u64, u64) {
    lab.set_delay(delay);
    let out = lab
        .prtip(&["-s", "syn", "-p", "1-2000", "--rate", "2000", "--transport", transport, "-o", "ndjson", "10.201.0.1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{transport}: {}", stderr_of(&out));
    let rows = rows(&out.stdout);
    assert_eq!(rows.len(), 2000, "{transport}, {delay:?}: {}", stderr_of(&out));
    assert_eq!(common::ports_in(&rows, "open"), delay_lab_open());
    (fastest(&rows, "open"), fastest(&rows, "closed"))
}

/// The delay line adds a little of its own, so each delay is measured
/// against a run through the same line with no delay: the fastest round trip
/// must grow by the injected delay, within 5% or 100 us, for SYN-ACKs (timed
/// by the TCP timestamp echo) and RSTs (timed by the tick in the sequence
/// number), and no reply can have come back sooner than the delay. With a
/// delay set, the delay line's own cost (some 60 us) hides inside it, so a
/// delayed run gains up to that much less than the delay: 100 us, not 50,
/// at 1 ms.
#[test]
fn injected_delays_are_measured_for_syn_acks_and_resets_through_both_transports() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let lab = DelayLab::new(&delay_lab_open());
    for transport in ["raw", "xdp"] {
        for delay_us in [1_000i64, 20_000] {
            let (open0, closed0) = fastest_round_trips(&lab, transport, Duration::ZERO);
            let (open, closed) = fastest_round_trips(&lab, transport, Duration::from_micros(delay_us as u64));
            let tolerance = (delay_us / 20).max(100);
            for (kind, base, got) in [("SYN-ACK", open0, open), ("RST", closed0, closed)] {
                let added = got as i64 - base as i64;
                assert!(got as i64 >= delay_us, "{transport} {kind}: a reply in {got} us with {delay_us} us injected");
                assert!(
                    (added - delay_us).abs() <= tolerance,
                    "{transport} {kind}: fastest {got} us with {delay_us} us injected, {base} us without: added {added} us"
                );
            }
        }
    }
}

/// UDP servers of the test's own on 10.201.0.1 in namespace `ns`, one
/// thread per port, each answering a datagram with the same bytes (from that
/// address: bound to any, a reply would leave from the route's own source);
/// stopped when dropped.
struct UdpEchoes {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl UdpEchoes {
    fn new(ns: &str, ports: &[u16]) -> UdpEchoes {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let ports = ports.to_vec();
        let sockets = common::in_netns(ns, move || {
            ports.iter().map(|p| std::net::UdpSocket::bind(("10.201.0.1", *p)).unwrap()).collect::<Vec<_>>()
        });
        let threads = sockets
            .into_iter()
            .map(|socket| {
                let stop = stop.clone();
                socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 2048];
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok((n, from)) = socket.recv_from(&mut buf) {
                            let _ = socket.send_to(&buf[..n], from);
                        }
                    }
                })
            })
            .collect();
        UdpEchoes { stop, threads }
    }
}

impl Drop for UdpEchoes {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Scans the delay lab once with an echo sweep of 10.201.0.0/24 and once
/// with a UDP scan of 10.201.0.1's ports 1-100; returns the fastest round
/// trip of echo replies and of UDP answers.
fn fastest_echo_and_udp(lab: &DelayLab, transport: &str, delay: Duration) -> (u64, u64) {
    lab.set_delay(delay);
    let run = |args: &[&str], proto: &str| {
        let mut all = vec!["--rate", "2000", "--transport", transport, "-o", "ndjson"];
        all.extend(args);
        let out = lab.prtip(&all).output().unwrap();
        assert!(out.status.success(), "{transport}: {}", stderr_of(&out));
        common::rows_of(&out.stdout, proto)
    };
    let echo = run(&["-s", "icmp", "10.201.0.0/24"], "icmp");
    assert_eq!(echo.iter().filter(|r| r.state == "up").count(), 256, "{transport}, {delay:?}");
    let udp = run(&["-sU", "-p", "1-100", "10.201.0.1"], "udp");
    let open: Vec<u16> = (1..=10).map(|i| i * 10).collect();
    assert_eq!(common::ports_in(&udp, "open"), open, "{transport}, {delay:?}");
    (fastest(&echo, "up"), fastest(&udp, "open"))
}

/// Echo replies, timed by the send time their payload brings back, and UDP
/// answers, timed from the send window's stamp of the try they answer: the
/// fastest round trip grows by the injected delay, within 5%. The delays are
/// 5 and 20 ms: a UDP answer comes from a thread that must wake, and with a
/// delay set the delay line's own cost of about 60 us hides inside it, so
/// the run without a delay is that much slower than the delay alone would say.
#[test]
fn injected_delays_are_measured_for_echo_replies_and_udp_answers_through_both_transports() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let lab = DelayLab::new(&[]);
    let _echoes = UdpEchoes::new(&lab.target_ns, &(1..=10).map(|i| i * 10).collect::<Vec<u16>>());
    for transport in ["raw", "xdp"] {
        for delay_us in [5_000i64, 20_000] {
            let (echo0, udp0) = fastest_echo_and_udp(&lab, transport, Duration::ZERO);
            let (echo, udp) = fastest_echo_and_udp(&lab, transport, Duration::from_micros(delay_us as u64));
            let tolerance = (delay_us / 20).max(50);
            for (kind, base, got) in [("echo reply", echo0, echo), ("UDP answer", udp0, udp)] {
                let added = got as i64 - base as i64;
                assert!(got as i64 >= delay_us, "{transport} {kind}: a reply in {got} us with {delay_us} us injected");
                assert!(
                    (added - delay_us).abs() <= tolerance,
                    "{transport} {kind}: fastest {got} us with {delay_us} us injected, {base} us without: added {added} us"
                );
            }
        }
    }
}

/// An RST is timed by the tick in the sequence number, which wraps every
/// 1.048576 s: a reply that takes longer must not be read as a short one.
#[test]
fn round_trips_longer_than_the_tick_wraps_are_read_whole() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let lab = DelayLab::new(&delay_lab_open());
    lab.set_delay(Duration::from_millis(1200));
    let args =
        ["-p", "1-100", "--rate", "1000", "--wait", "3", "--transport", "raw", "-o", "ndjson", "-v", "10.201.0.1"];
    let out = lab.prtip(&args).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let rows = rows(&out.stdout);
    assert_eq!(rows.len(), 100, "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("; 0 late replies"), "none slower than --wait: {}", stderr_of(&out));
    for r in &rows {
        let rtt = r.rtt_us.expect("every reply is timed");
        assert!((1_200_000..1_400_000).contains(&rtt), "port {} ({}): {rtt} us with 1.2 s injected", r.port, r.state);
    }
}

fn report(db: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_prtip")).args(["report", "--database", db]).args(args).output().unwrap()
}

/// The rows of an `.hgrm` table: (value in ms, percentile, total count).
fn hgrm_rows(text: &str) -> Vec<(f64, f64, u64)> {
    text.lines()
        .skip_while(|l| !l.contains("Percentile"))
        .skip(1)
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].parse().unwrap(), f[1].parse().unwrap(), f[2].parse().unwrap())
        })
        .collect()
}

/// Renders `svg` in headless Chromium and returns how many pixels of the
/// plot area are neither white, grey nor black: the drawn series.
fn coloured_pixels_in_chromium(svg: &std::path::Path) -> usize {
    let png = svg.with_extension("png");
    let out = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=800,480"])
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", svg.display()))
        .output()
        .expect("chromium (Debian package chromium) must be installed");
    assert!(out.status.success(), "chromium: {}", stderr_of(&out));
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    assert!(channels >= 3 && info.bit_depth == png::BitDepth::Eight, "{info:?}");
    let mut count = 0;
    // The plot area of plot.rs: x 80..620, y 50..420.
    for y in 55..415 {
        for x in 85..615 {
            let i = (y * info.width as usize + x) * channels;
            let (r, g, b) = (buf[i] as i32, buf[i + 1] as i32, buf[i + 2] as i32);
            if (r - g).abs().max((g - b).abs()).max((r - b).abs()) > 60 {
                count += 1;
            }
        }
    }
    count
}

#[test]
fn stored_histograms_are_reported_compared_and_plotted() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let mut lab = Lab::new(true);
    one_host_target(&mut lab);
    let dir = temp_dir();
    let db = &path_in(&dir, "scans.db");
    let mut timed = Vec::new();
    for _ in 0..2 {
        let out = lab
            .prtip(&["-s", "syn", "-p", "1-5000,7001", "--with-db", "--database", db, "-o", "ndjson", "10.201.0.1"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        let rows = rows(&out.stdout);
        assert_eq!(rows.len(), 5001);
        timed.push(rows.iter().filter(|r| r.rtt_us.is_some()).count() as u64);
    }
    // 7001 is refused by ICMP, so every reply is timed: 3 open, 4997 closed, 1 filtered.
    assert_eq!(timed, [5001, 5001]);

    let out = report(db, &["1"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let counts: Vec<(String, u64)> = text
        .lines()
        .skip(2)
        .take_while(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[1].parse().unwrap())
        })
        .collect();
    let want = [("all", 5001), ("open", 3), ("closed", 4997), ("filtered", 1)].map(|(s, n)| (s.to_string(), n));
    assert_eq!(counts, want, "{text}");
    let table = hgrm_rows(&text);
    assert!(table.windows(2).all(|w| w[0].2 <= w[1].2 && w[0].1 <= w[1].1), "{text}");
    assert_eq!(table.last().unwrap().2, 5001);
    assert!(text.contains(&format!("Total count    = {:12}", 5001)));

    let out = report(db, &["1", "2", "--series", "closed"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("round trip (us) of closed replies"), "{text}");
    let count_line: Vec<&str> = text.lines().find(|l| l.starts_with("count")).unwrap().split_whitespace().collect();
    assert_eq!(count_line, ["count", "4997", "4997"]);

    let out = report(db, &["2", "--by", "host", "--top", "5"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let host_line = text.lines().find(|l| l.starts_with("10.201.0.1 ")).expect(&text);
    assert_eq!(host_line.split_whitespace().nth(1), Some("5001"));

    for (args, paths) in [(vec!["1"], 3), (vec!["1", "2"], 2)] {
        let svg = dir.path().join(format!("plot{}.svg", args.len()));
        let svg_arg = svg.to_str().unwrap();
        let mut all = args.clone();
        all.extend(["--plot", svg_arg]);
        let out = report(db, &all);
        assert!(out.status.success(), "{}", stderr_of(&out));
        let xmllint = Command::new("xmllint").args(["--noout", svg_arg]).output().unwrap();
        assert!(xmllint.status.success(), "not well-formed XML: {}", stderr_of(&xmllint));
        let text = std::fs::read_to_string(&svg).unwrap();
        assert_eq!(text.matches("<path ").count(), paths, "{text}");
        let drawn = coloured_pixels_in_chromium(&svg);
        assert!(drawn > 500, "the plot area is blank in Chromium ({drawn} coloured pixels)");
    }

    // Bad requests: a scan that does not exist, an unknown series, no scan at all.
    for (args, code) in [(vec!["9"], 2), (vec!["1", "--series", "rst"], 2), (vec![], 2)] {
        let out = report(db, &args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr_of(&out));
        assert_eq!(stderr_of(&out).lines().filter(|l| l.contains("error")).count(), 1, "{args:?}");
    }
}
