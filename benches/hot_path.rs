//! Per-probe and per-reply costs of the pure hot path: what one core can do
//! before any system call.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use etherparse::{PacketBuilder, TcpOptionElement};
use prtip::engine::plan::ScanPlan;
use prtip::latency::Latency;
use prtip::permute::Permutation;
use prtip::probe::syn::{SYN_FRAME_LEN, SynProbe, SynTemplate};
use prtip::probe::{Matcher, Probe, ScanType, Templates};
use prtip::result::{PortState, Reason, ScanResult};
use prtip::target::hosts::{Family, Hosts};
use prtip::target::ranges::{Range, RangeSet};
use prtip::target::space::TargetSpace;
use prtip::wire::cookie::CookieKey;
use prtip::wire::sources::Sources;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

const ME: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 200, 0, 1));
const TARGET: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 201, 0, 1));

fn per_probe(c: &mut Criterion) {
    let mut g = c.benchmark_group("probe");
    g.throughput(Throughput::Elements(1));
    let key = CookieKey::new(1, 2);
    g.bench_function("cookie", |b| {
        let mut i = 0u32;
        b.iter(|| {
            i = i.wrapping_add(1);
            key.seq(ME, Ipv4Addr::from(black_box(i)).into(), 61000, 80, u64::from(i))
        })
    });
    let seq = key.seq(ME, TARGET, 61000, 80, 1_000_000);
    g.bench_function("cookie check", |b| {
        b.iter(|| key.check(ME, TARGET, 61000, black_box(80), black_box(seq)).unwrap())
    });
    let perm = Permutation::new(65536 * 16, 7);
    g.bench_function("permutation step", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i = (i + 1) % (65536 * 16);
            perm.get(black_box(i))
        })
    });
    let template = SynTemplate::new([2; 6], [3; 6], ME);
    let mut frame = [0u8; SYN_FRAME_LEN];
    g.bench_function("frame patch", |b| {
        let mut i = 0u32;
        b.iter(|| {
            i = i.wrapping_add(1);
            let probe =
                SynProbe { dst: Ipv4Addr::from(i).into(), sport: 61000, dport: 80, seq: i, ip_id: i as u16, tsval: i };
            template.write(black_box(&probe), &mut frame);
        })
    });
    let space = TargetSpace::new(
        Hosts::new(Family::V4, RangeSet::from_ranges(vec![Range::new(0x0ac9_0000, 0x0ac9_ffff)])),
        RangeSet::from_ranges(vec![Range::new(1, 12), Range::new(22, 22), Range::new(80, 80), Range::new(443, 443)]),
    )
    .unwrap();
    let plan = ScanPlan::new(space, 7, (61000, 61063), 0, 0, Duration::from_secs(1));
    // What a transmit lane does per probe, through the probe module as the engine calls it.
    for scan_type in [ScanType::Syn, ScanType::Icmp, ScanType::Udp] {
        let templates = Templates::new(scan_type, [2; 6], [3; 6], Sources::one(ME), &[]).unwrap();
        let mut frame = vec![0u8; templates.module().max_frame_len()];
        let name = format!("whole {} probe (order, target, cookie, frame)", scan_type.as_str());
        g.bench_function(name, |b| {
            let mut pos = 0u64;
            b.iter(|| {
                pos = (pos + 1) % plan.probe_count();
                let (index, ip, port) = plan.target(pos);
                let sport = plan.source_port(index, 0);
                templates.write(&key, &Probe { dst: ip, sport, dport: port, send_us: pos }, &mut frame)
            })
        });
    }
    g.finish();
}

fn per_reply(c: &mut Criterion) {
    let mut g = c.benchmark_group("reply");
    g.throughput(Throughput::Elements(1));
    let key = CookieKey::new(1, 2);
    let target = TARGET;
    let matcher = Matcher { sources: Sources::one(ME), src_ports: (61000, 61063), key };
    let templates = Templates::new(ScanType::Syn, [2; 6], [3; 6], Sources::one(ME), &[]).unwrap();
    let module = templates.module();
    let mut syn_ack = Vec::new();
    PacketBuilder::ethernet2([3; 6], [2; 6])
        .ipv4([10, 201, 0, 1], [10, 200, 0, 1], 64)
        .tcp(443, 61000, 5, 64000)
        .syn()
        .ack(key.seq(ME, target, 61000, 443, 1_000_000).wrapping_add(1))
        .options(&[TcpOptionElement::Timestamp(1, key.tsval(1_000_000))])
        .unwrap()
        .write(&mut syn_ack, &[])
        .unwrap();
    g.bench_function("classify valid syn-ack", |b| b.iter(|| module.classify(&matcher, black_box(&syn_ack)).unwrap()));
    let mut forged = syn_ack.clone();
    forged[14 + 20 + 8] ^= 1;
    g.bench_function("reject forged syn-ack", |b| {
        b.iter(|| assert!(module.classify(&matcher, black_box(&forged)).is_err()))
    });
    let mut latency = Latency::default();
    let mut result = ScanResult {
        ip: target,
        port: 443,
        state: PortState::Open,
        reason: Reason::SynAck,
        ttl: Some(64),
        rtt_us: None,
        time_us: 0,
    };
    g.bench_function("record round trip", |b| {
        let mut us = 0u64;
        b.iter(|| {
            us = (us + 7919) & 0xf_ffff;
            result.rtt_us = Some(us);
            latency.record(black_box(&result));
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = per_probe, per_reply
}
criterion_main!(benches);
