//! A seeded mutational fuzzer on stable Rust: frames built as a target would
//! answer our probes (SYN-ACKs with and without timestamps, RSTs, echo
//! replies, UDP answers, ICMP and ICMPv6 errors quoting a real probe, ARP
//! replies, neighbour advertisements) and netlink answers captured from this
//! machine's kernel, mutated a few bytes at a time and fed to every parser
//! that reads what arrives: `Module::classify` of every probe module (IPv4
//! and IPv6), `arp::reply_from`,
//! `ndp::advertisement_from`, `netlink::parse_route` and
//! `netlink::parse_neighbours`. Nothing may panic.
//!
//! The suite runs `PRTIP_FUZZ_INPUTS` inputs (200,000 by default, about a
//! second); docs/USAGE.md has the command that runs 10^7. `PRTIP_FUZZ_SEED`
//! picks another sequence of mutations.

use etherparse::{IcmpEchoHeader, Icmpv4Type, Icmpv6Type, PacketBuilder, TcpOptionElement};
use prtip::net::netlink;
use prtip::probe::{Matcher, Module, Probe, ScanType};
use prtip::wire::cookie::CookieKey;
use prtip::wire::sources::Sources;
use prtip::wire::{arp, ndp};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const ME4: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
const TARGET4: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 9);
const ME6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 1);
const TARGET6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x201, 0, 0, 0, 0, 0, 5);
const SENT_US: u64 = 5_000_123;
const SPORT: u16 = 61007;
const DPORT: u16 = 443;

/// xorshift64*: the same inputs for the same seed, everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name}={v} is no number")))
}

fn module(scan_type: ScanType, src: IpAddr) -> Module {
    Module::new(scan_type, [2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], src, &[]).unwrap()
}

/// Our probe of `scan_type` to `dst`, as its module writes it.
fn probe_of(scan_type: ScanType, key: &CookieKey, src: IpAddr, dst: IpAddr, dport: u16) -> Vec<u8> {
    let module = module(scan_type, src);
    let mut frame = vec![0u8; module.max_frame_len()];
    let len = module.write(key, src, &Probe { dst, sport: SPORT, dport, send_us: SENT_US }, &mut frame);
    frame.truncate(len);
    frame
}

fn probe(key: &CookieKey, src: IpAddr, dst: IpAddr) -> Vec<u8> {
    probe_of(ScanType::Syn, key, src, dst, DPORT)
}

/// What a target's kernel or service sends back to an echo request or a
/// UDP probe: the same addresses and ports reversed, and (for an echo) the
/// same identifier, sequence number and payload.
fn answer(request: &[u8], ttl: u8, udp_payload: &[u8]) -> Vec<u8> {
    let p = etherparse::SlicedPacket::from_ethernet(request).unwrap();
    let (src, dst, v6): (Vec<u8>, Vec<u8>, bool) = match p.net.unwrap() {
        etherparse::NetSlice::Ipv4(ip) => (ip.header().source().to_vec(), ip.header().destination().to_vec(), false),
        etherparse::NetSlice::Ipv6(ip) => (ip.header().source().to_vec(), ip.header().destination().to_vec(), true),
        _ => unreachable!(),
    };
    let b = PacketBuilder::ethernet2([2; 6], [3; 6]);
    let b = if v6 {
        b.ipv6(dst.try_into().unwrap(), src.try_into().unwrap(), ttl)
    } else {
        b.ipv4(dst.try_into().unwrap(), src.try_into().unwrap(), ttl)
    };
    let mut out = Vec::new();
    match p.transport.unwrap() {
        etherparse::TransportSlice::Icmpv4(icmp) => {
            let Icmpv4Type::EchoRequest(e) = icmp.icmp_type() else { unreachable!() };
            b.icmpv4_echo_reply(e.id, e.seq).write(&mut out, icmp.payload()).unwrap();
        }
        etherparse::TransportSlice::Icmpv6(icmp) => {
            let Icmpv6Type::EchoRequest(e) = icmp.icmp_type() else { unreachable!() };
            b.icmpv6_echo_reply(e.id, e.seq).write(&mut out, icmp.payload()).unwrap();
        }
        etherparse::TransportSlice::Udp(udp) => {
            b.udp(udp.destination_port(), udp.source_port()).write(&mut out, udp_payload).unwrap();
        }
        _ => unreachable!(),
    }
    out
}

/// What a target sends back to our probes, and what the kernel answers the
/// path discovery with: the inputs the mutations start from.
fn seeds(key: &CookieKey) -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    let ack4 = key.seq(ME4.into(), TARGET4.into(), SPORT, DPORT, SENT_US).wrapping_add(1);
    let ack6 = key.seq(ME6.into(), TARGET6.into(), SPORT, DPORT, SENT_US).wrapping_add(1);
    let echo = key.tsval(SENT_US);
    for (syn, rst, ts) in [(true, false, true), (true, false, false), (false, true, false)] {
        let mut b = PacketBuilder::ethernet2([2; 6], [3; 6])
            .ipv4(TARGET4.octets(), ME4.octets(), 57)
            .tcp(DPORT, SPORT, 777, 64000)
            .ack(ack4);
        if syn {
            b = b.syn();
        }
        if rst {
            b = b.rst();
        }
        if ts {
            b = b.options(&[TcpOptionElement::Timestamp(99, echo)]).unwrap();
        }
        let mut f = Vec::new();
        b.write(&mut f, &[]).unwrap();
        seeds.push(f);
    }
    let mut f = Vec::new();
    PacketBuilder::ethernet2([2; 6], [3; 6])
        .ipv6(TARGET6.octets(), ME6.octets(), 57)
        .tcp(DPORT, SPORT, 777, 64000)
        .ack(ack6)
        .syn()
        .options(&[TcpOptionElement::Timestamp(99, echo)])
        .unwrap()
        .write(&mut f, &[])
        .unwrap();
    seeds.push(f);
    let syn4 = probe(key, ME4.into(), TARGET4.into());
    let mut f = Vec::new();
    PacketBuilder::ethernet2([2; 6], [3; 6])
        .ipv4([10, 200, 0, 2], ME4.octets(), 63)
        .icmpv4(Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::from_values(13, 0).unwrap(),
        ))
        .write(&mut f, &syn4[14..14 + 20 + 8])
        .unwrap();
    seeds.push(f);
    let syn6 = probe(key, ME6.into(), TARGET6.into());
    let mut f = Vec::new();
    PacketBuilder::ethernet2([2; 6], [3; 6])
        .ipv6([0xfd, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2], ME6.octets(), 63)
        .icmpv6(Icmpv6Type::DestinationUnreachable(etherparse::icmpv6::DestUnreachableCode::from_u8(1).unwrap()))
        .write(&mut f, &syn6[14..])
        .unwrap();
    seeds.push(f);
    // Echo replies, and a DNS server's answer, with the IDs of our probes.
    for (me, target) in [(IpAddr::from(ME4), IpAddr::from(TARGET4)), (ME6.into(), TARGET6.into())] {
        seeds.push(answer(&probe_of(ScanType::Icmp, key, me, target, 0), 60, &[]));
        let query = probe_of(ScanType::Udp, key, me, target, 53);
        let len = prtip::probe::udp::payload::builtin(53).unwrap().bytes.len();
        let dns = query[query.len() - len..].to_vec();
        seeds.push(answer(&query, 60, &dns));
    }
    // Not a reply at all: a ping.
    let mut f = Vec::new();
    PacketBuilder::ethernet2([2; 6], [3; 6])
        .ipv4(TARGET4.octets(), ME4.octets(), 64)
        .icmpv4(Icmpv4Type::EchoReply(IcmpEchoHeader { id: 1, seq: 2 }))
        .write(&mut f, b"abcd")
        .unwrap();
    seeds.push(f);
    // An ARP reply and a neighbour advertisement, from the requests prtip sends.
    let mut reply = arp::request([2, 0, 0, 0, 0, 2], TARGET4, ME4).to_vec();
    reply[21] = 2;
    seeds.push(reply);
    let mut advert = ndp::solicitation([2, 0, 0, 0, 0, 2], TARGET6, ME6).to_vec();
    advert[14 + 40] = 136;
    seeds.push(advert);
    // The kernel's own answers to a route and a neighbour query.
    for request in
        [netlink::route_request(Ipv4Addr::LOCALHOST.into(), None), netlink::neighbour_dump_request(ME4.into(), 1)]
    {
        // One datagram of each answer is enough to start from.
        netlink::query(&request, |answer| {
            seeds.push(answer.to_vec());
            Ok(true)
        })
        .expect("netlink answers the tests' queries");
    }
    seeds
}

/// One to four byte-level changes: flips, random bytes, cuts, insertions and splices.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8]) {
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(input.len() + 1);
        match rng.below(6) {
            0 if at < input.len() => input[at] ^= 1 << rng.below(8),
            1 if at < input.len() => input[at] = rng.next() as u8,
            2 => input.truncate(at),
            3 => input.insert(at, rng.next() as u8),
            4 if !other.is_empty() => {
                let from = rng.below(other.len());
                let n = rng.below(other.len() - from + 1).min(input.len().saturating_sub(at));
                input[at..at + n].copy_from_slice(&other[from..from + n]);
            }
            _ => input.extend((0..rng.below(16)).map(|_| rng.next() as u8)),
        }
    }
}

#[test]
fn mutated_replies_and_kernel_answers_never_panic_a_parser() {
    let inputs = env_u64("PRTIP_FUZZ_INPUTS", 200_000);
    let mut rng = Rng(env_u64("PRTIP_FUZZ_SEED", 0x5eed_cafe_f00d_0001) | 1);
    let key = CookieKey::new(0x1234, 0x5678);
    let v4 = Matcher { sources: Sources::one(ME4.into()), src_ports: (61000, 61063), key };
    let v6 = Matcher { sources: Sources::one(ME6.into()), src_ports: (61000, 61063), key };
    let modules: Vec<(Matcher, Module)> = [ScanType::Syn, ScanType::Icmp, ScanType::Udp]
        .into_iter()
        .flat_map(|t| [(v4, module(t, ME4.into())), (v6, module(t, ME6.into()))])
        .collect();
    let seeds = seeds(&key);
    // The seeds themselves are what they say: our probes' replies are replies.
    let classify =
        |i: usize, scan_type: ScanType, m: &Matcher| module(scan_type, m.sources.first()).classify(m, &seeds[i]);
    assert!(classify(0, ScanType::Syn, &v4).is_ok() && classify(2, ScanType::Syn, &v4).is_ok());
    assert!(classify(3, ScanType::Syn, &v6).is_ok());
    assert!(classify(6, ScanType::Icmp, &v4).is_ok() && classify(7, ScanType::Udp, &v4).is_ok());
    assert!(classify(8, ScanType::Icmp, &v6).is_ok() && classify(9, ScanType::Udp, &v6).is_ok());
    let (mut accepted, mut moved) = (0u64, 0u64);
    for i in 0..inputs {
        let seed = &seeds[i as usize % seeds.len()];
        let mut input = seed.clone();
        let other = &seeds[rng.below(seeds.len())];
        mutate(&mut rng, &mut input, other);
        for (matcher, module) in &modules {
            if let Ok(reply) = module.classify(matcher, &input) {
                accepted += 1;
                // Another probe's reply made up by a mutation: what a blind forger hopes for.
                let port = if module.scan_type() == ScanType::Syn { DPORT } else { reply.port };
                moved += u64::from((reply.port, reply.from_port) != (port, SPORT));
            }
        }
        let _ = arp::reply_from(&input, TARGET4);
        let _ = ndp::advertisement_from(&input, TARGET6);
        let _ = netlink::parse_route(&input, Ipv4Addr::LOCALHOST.into());
        let _ = netlink::parse_neighbours(&input, ME4.into(), 1);
    }
    eprintln!("{inputs} inputs: {accepted} accepted as replies, {moved} of them for another probe; no panic");
}
