//! A seeded mutational fuzzer on stable Rust: frames built as a target would
//! answer our probes (SYN-ACKs with and without timestamps, RSTs, ICMP and
//! ICMPv6 errors quoting a real probe, ARP replies, neighbour advertisements)
//! and netlink answers captured from this machine's kernel, mutated a few
//! bytes at a time and fed to every parser that reads what arrives:
//! `ReplyMatcher::classify` (IPv4 and IPv6), `arp::reply_from`,
//! `ndp::advertisement_from`, `netlink::parse_route` and
//! `netlink::parse_neighbours`. Nothing may panic.
//!
//! The suite runs `PRTIP_FUZZ_INPUTS` inputs (200,000 by default, about a
//! second); docs/USAGE.md has the command that runs 10^7. `PRTIP_FUZZ_SEED`
//! picks another sequence of mutations.

use etherparse::{IcmpEchoHeader, Icmpv4Type, Icmpv6Type, PacketBuilder, TcpOptionElement};
use prtip::net::netlink;
use prtip::wire::cookie::CookieKey;
use prtip::wire::reply::ReplyMatcher;
use prtip::wire::template::{Probe, SYN_FRAME_LEN, SynTemplate};
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

/// Our probe to `dst`, as the template writes it.
fn probe(key: &CookieKey, src: IpAddr, dst: IpAddr) -> Vec<u8> {
    let t = SynTemplate::new([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], src);
    let seq = key.seq(src, dst, SPORT, DPORT, SENT_US);
    let mut frame = [0u8; SYN_FRAME_LEN];
    t.write(&Probe { dst, sport: SPORT, dport: DPORT, seq, ip_id: seq as u16, tsval: key.tsval(SENT_US) }, &mut frame);
    frame[..t.frame_len()].to_vec()
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
    let v4 = ReplyMatcher { src_ip: ME4.into(), src_ports: (61000, 61063), key };
    let v6 = ReplyMatcher { src_ip: ME6.into(), src_ports: (61000, 61063), key };
    let seeds = seeds(&key);
    // The seeds themselves are what they say: our probes' replies are replies.
    assert!(v4.classify(&seeds[0]).is_ok() && v4.classify(&seeds[2]).is_ok() && v6.classify(&seeds[3]).is_ok());
    let (mut accepted, mut moved) = (0u64, 0u64);
    for i in 0..inputs {
        let seed = &seeds[i as usize % seeds.len()];
        let mut input = seed.clone();
        let other = &seeds[rng.below(seeds.len())];
        mutate(&mut rng, &mut input, other);
        for matcher in [&v4, &v6] {
            if let Ok(reply) = matcher.classify(&input) {
                accepted += 1;
                // Another probe's reply made up by a mutation: what a blind forger hopes for.
                moved += u64::from((reply.port, reply.from_port) != (DPORT, SPORT));
            }
        }
        let _ = arp::reply_from(&input, TARGET4);
        let _ = ndp::advertisement_from(&input, TARGET6);
        let _ = netlink::parse_route(&input, Ipv4Addr::LOCALHOST.into());
        let _ = netlink::parse_neighbours(&input, ME4.into(), 1);
    }
    eprintln!("{inputs} inputs: {accepted} accepted as replies, {moved} of them for another probe; no panic");
}
