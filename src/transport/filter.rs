//! The classic BPF programs that let only possible replies reach a packet
//! socket. IPv4: to one of our addresses, either ICMP or unfragmented TCP or
//! UDP (the probes' protocol) to one of our source ports. IPv6: to one of our
//! addresses,
//! either ICMPv6 destination unreachable, an echo reply (echo scans only),
//! or TCP or UDP (directly after the fixed header) to one of our source
//! ports; neighbour discovery and the rest stay in the kernel. Everything
//! else is dropped.

use super::Replies;
use crate::wire::field::{self, ethernet, icmp, ipv4, ipv6, tcp};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One instruction, laid out as the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

const LDH_ABS: u16 = 0x28;
const LDW_ABS: u16 = 0x20;
const LDB_ABS: u16 = 0x30;
const LDX_MSH: u16 = 0xb1;
const LDH_IND: u16 = 0x48;
const JEQ: u16 = 0x15;
const JGT: u16 = 0x25;
const JGE: u16 = 0x35;
const JSET: u16 = 0x45;
const RET: u16 = 0x06;

/// Bytes of each accepted frame handed to userspace: a whole frame of a
/// 1500-byte MTU, so that a UDP service's answer arrives whole.
pub const SNAP_LEN: u32 = 2048;

const IP: usize = ethernet::HEADER_LEN;

/// A frame offset as the loads take it.
const fn abs(offset: usize) -> u32 {
    offset as u32
}

/// The filter that takes `replies` (to probes of TCP, UDP, ICMP or ICMPv6).
pub fn reply_filter(Replies { to, ports, protocol }: Replies) -> Vec<Insn> {
    // An echo's replies are ICMP alone: no TCP or UDP header is compared with it.
    let ported = match protocol {
        field::PROTOCOL_TCP | field::PROTOCOL_UDP => u32::from(protocol),
        _ => NO_PROTOCOL,
    };
    // One family, as `Sources` guarantees.
    let addrs = to.as_slice();
    if to.is_ipv4() {
        let v4: Vec<Ipv4Addr> =
            addrs.iter().filter_map(|a| if let IpAddr::V4(a) = a { Some(*a) } else { None }).collect();
        reply_filter_v4(&v4, ports, ported)
    } else {
        let v6: Vec<Ipv6Addr> =
            addrs.iter().filter_map(|a| if let IpAddr::V6(a) = a { Some(*a) } else { None }).collect();
        reply_filter_v6(&v6, ports, ported, protocol == field::PROTOCOL_ICMPV6)
    }
}

/// A protocol number no byte holds.
const NO_PROTOCOL: u32 = 0x100;

fn i(code: u16, k: u32) -> Insn {
    Insn { code, jt: 0, jf: 0, k }
}

/// A conditional jump to absolute instruction numbers, made relative by `relative`.
fn j(code: u16, k: u32, jt: u8, jf: u8) -> Insn {
    Insn { code, jt, jf, k }
}

fn next(pc: u8) -> u8 {
    pc + 1
}

fn relative(mut prog: Vec<Insn>) -> Vec<Insn> {
    for (pc, insn) in prog.iter_mut().enumerate() {
        if insn.code & 0x07 == 0x05 {
            insn.jt -= pc as u8 + 1;
            insn.jf -= pc as u8 + 1;
        }
    }
    prog
}

/// `ported`: the protocol (TCP or UDP) whose destination port must be ours.
/// Instruction numbers are those of a single address; each further one
/// adds one comparison (`a`, the addresses after the first).
fn reply_filter_v4(src_ips: &[Ipv4Addr], ports: (u16, u16), ported: u32) -> Vec<Insn> {
    let a = src_ips.len() as u8 - 1;
    let body = 4 + a;
    let (accept, drop) = (13 + a, 14 + a);
    let mut prog = vec![
        i(LDH_ABS, abs(ethernet::ETHERTYPE.start)),            // 0
        j(JEQ, u32::from(ethernet::TYPE_IPV4), next(1), drop), // 1
        i(LDW_ABS, abs(IP + ipv4::DESTINATION.start)),         // 2
    ];
    for (n, ip) in src_ips.iter().enumerate() {
        let pc = 3 + n as u8;
        let miss = if pc + 1 == body { drop } else { next(pc) };
        prog.push(j(JEQ, u32::from(*ip), body, miss)); // 3
    }
    prog.extend([
        i(LDB_ABS, abs(IP + ipv4::PROTOCOL)),                            // 4
        j(JEQ, u32::from(field::PROTOCOL_ICMP), accept, next(body + 1)), // 5
        j(JEQ, ported, next(body + 2), drop),                            // 6
        i(LDH_ABS, abs(IP + ipv4::FLAGS_FRAGMENT.start)),                // 7
        j(JSET, 0x1fff, drop, next(body + 4)),                           // 8: not a first fragment
        i(LDX_MSH, abs(IP + ipv4::VERSION_IHL)),                         // 9: X = IPv4 header length
        i(LDH_IND, abs(IP + tcp::DST_PORT.start)),                       // 10: X + this (UDP's is there too)
        j(JGE, u32::from(ports.0), next(body + 7), drop),                // 11
        j(JGT, u32::from(ports.1), drop, accept),                        // 12
        i(RET, SNAP_LEN),                                                // 13: accept
        i(RET, 0),                                                       // 14: drop
    ]);
    relative(prog)
}

/// A reply whose TCP or UDP header sits behind extension headers is not
/// ours: our probes carry none, and neither do the answers to them. Echo
/// replies are taken only by an echo scan (`echo`). Instruction numbers are
/// those of a single address; each further one adds eight (`a * 8`, `a`
/// the addresses after the first).
fn reply_filter_v6(src_ips: &[Ipv6Addr], ports: (u16, u16), ported: u32, echo: bool) -> Vec<Insn> {
    let a = src_ips.len() as u8 - 1;
    let body = 10 + a * 8;
    let (ports_at, accept, drop) = (16 + a * 8, 19 + a * 8, 20 + a * 8);
    let echo_reply = if echo { accept } else { drop };
    let dst_word = |n: usize| abs(IP + ipv6::DESTINATION.start + n * 4);
    const L4: usize = IP + ipv6::HEADER_LEN;
    let mut prog = vec![
        i(LDH_ABS, abs(ethernet::ETHERTYPE.start)),            // 0
        j(JEQ, u32::from(ethernet::TYPE_IPV6), next(1), drop), // 1
    ];
    // Each address compared a word at a time; a word that differs moves on to the next address.
    for (n, ip) in src_ips.iter().enumerate() {
        let start = 2 + n as u8 * 8;
        let miss = if start + 8 == body { drop } else { start + 8 };
        for w in 0..4 {
            let word = u32::from_be_bytes(ip.octets()[w * 4..w * 4 + 4].try_into().expect("4 bytes"));
            let pc = start + w as u8 * 2;
            let hit = if w == 3 { body } else { next(pc + 1) };
            prog.push(i(LDW_ABS, dst_word(w))); // 2, 4, 6, 8
            prog.push(j(JEQ, word, hit, miss)); // 3, 5, 7, 9
        }
    }
    prog.extend([
        i(LDB_ABS, abs(IP + ipv6::NEXT_HEADER)),                                     // 10
        j(JEQ, ported, ports_at, next(body + 1)),                                    // 11
        j(JEQ, u32::from(field::PROTOCOL_ICMPV6), next(body + 2), drop),             // 12
        i(LDB_ABS, abs(L4 + icmp::TYPE)),                                            // 13
        j(JEQ, u32::from(icmp::V6_DESTINATION_UNREACHABLE), accept, next(body + 4)), // 14
        j(JEQ, u32::from(icmp::V6_ECHO_REPLY), echo_reply, drop),                    // 15
        i(LDH_ABS, abs(L4 + tcp::DST_PORT.start)),                                   // 16 (UDP's is there too)
        j(JGE, u32::from(ports.0), next(ports_at + 1), drop),                        // 17
        j(JGT, u32::from(ports.1), drop, accept),                                    // 18
        i(RET, SNAP_LEN),                                                            // 19: accept
        i(RET, 0),                                                                   // 20: drop
    ]);
    relative(prog)
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::sources::Sources;
    use etherparse::{PacketBuilder, TcpOptionElement};

    /// Just enough of the classic BPF machine to run `reply_filter`.
    fn run(prog: &[Insn], pkt: &[u8]) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let load = |off: usize, n: usize| -> Option<u32> {
            pkt.get(off..off + n).map(|b| b.iter().fold(0u32, |acc, &v| acc << 8 | u32::from(v)))
        };
        loop {
            let Insn { code, jt, jf, k } = prog[pc];
            pc += 1;
            let jump = |cond: bool| if cond { usize::from(jt) } else { usize::from(jf) };
            match code {
                LDH_ABS => {
                    a = match load(k as usize, 2) {
                        Some(v) => v,
                        None => return 0,
                    }
                }
                LDW_ABS => {
                    a = match load(k as usize, 4) {
                        Some(v) => v,
                        None => return 0,
                    }
                }
                LDB_ABS => {
                    a = match load(k as usize, 1) {
                        Some(v) => v,
                        None => return 0,
                    }
                }
                LDX_MSH => {
                    x = match load(k as usize, 1) {
                        Some(v) => (v & 0xf) * 4,
                        None => return 0,
                    }
                }
                LDH_IND => {
                    a = match load((x + k) as usize, 2) {
                        Some(v) => v,
                        None => return 0,
                    }
                }
                JEQ => pc += jump(a == k),
                JGT => pc += jump(a > k),
                JGE => pc += jump(a >= k),
                JSET => pc += jump(a & k != 0),
                RET => return k,
                other => panic!("opcode {other:#x}"),
            }
        }
    }

    const ME: [u8; 4] = [10, 200, 0, 1];

    fn tcp_to(dst: [u8; 4], dport: u16) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([10, 201, 0, 1], dst, 64)
            .tcp(80, dport, 1, 1024)
            .syn()
            .write(&mut out, &[])
            .unwrap();
        out
    }

    #[test]
    fn accepts_tcp_to_our_ports_and_icmp_only() {
        let prog = reply_filter(Replies {
            to: Sources::one(IpAddr::from(ME)),
            ports: (61000, 61063),
            protocol: field::PROTOCOL_TCP,
        });
        assert_eq!(run(&prog, &tcp_to(ME, 61000)), SNAP_LEN);
        assert_eq!(run(&prog, &tcp_to(ME, 61063)), SNAP_LEN);
        assert_eq!(run(&prog, &tcp_to(ME, 60999)), 0);
        assert_eq!(run(&prog, &tcp_to(ME, 61064)), 0);
        assert_eq!(run(&prog, &tcp_to([10, 200, 0, 2], 61000)), 0);

        let mut icmp = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([10, 200, 0, 2], ME, 64)
            .icmpv4_echo_request(1, 1)
            .write(&mut icmp, &[])
            .unwrap();
        assert_eq!(run(&prog, &icmp), SNAP_LEN);

        let mut udp = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([10, 200, 0, 2], ME, 64)
            .udp(53, 61000)
            .write(&mut udp, &[])
            .unwrap();
        assert_eq!(run(&prog, &udp), 0);

        let mut arp = tcp_to(ME, 61000);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(run(&prog, &arp), 0);

        let mut fragment = tcp_to(ME, 61000);
        fragment[20..22].copy_from_slice(&[0x00, 0x10]);
        assert_eq!(run(&prog, &fragment), 0);
        assert_eq!(run(&prog, &fragment[..20]), 0);
    }

    const ME6: [u8; 16] = [0xfd, 0, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const PEER6: [u8; 16] = [0xfd, 0, 0x02, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

    fn tcp6(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv6(src, dst, 64)
            .tcp(sport, dport, 1, 1024)
            .syn()
            .ack(2)
            .write(&mut out, &[])
            .unwrap();
        out
    }

    fn icmp6_to(dst: [u8; 16], type_u8: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv6(PEER6, dst, 64)
            .icmpv6_raw(type_u8, 0, [0; 4])
            .write(&mut out, payload)
            .unwrap();
        out
    }

    /// One of our IPv6 SYN frames as the transports carry it: 90 bytes.
    fn our_syn6() -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2([2; 6], [1; 6])
            .ipv6(ME6, PEER6, 64)
            .tcp(61000, 80, 1, 1024)
            .syn()
            .options(&[
                TcpOptionElement::MaximumSegmentSize(1460),
                TcpOptionElement::Noop,
                TcpOptionElement::Noop,
                TcpOptionElement::Timestamp(1, 0),
            ])
            .unwrap()
            .write(&mut out, &[])
            .unwrap();
        out
    }

    #[test]
    fn v6_accepts_tcp_to_our_address_and_ports() {
        let prog = reply_filter(Replies {
            to: Sources::one(IpAddr::from(ME6)),
            ports: (61000, 61063),
            protocol: field::PROTOCOL_TCP,
        });
        assert_eq!(run(&prog, &tcp6(PEER6, ME6, 80, 61000)), SNAP_LEN);
        assert_eq!(run(&prog, &tcp6(PEER6, ME6, 80, 61063)), SNAP_LEN);
        assert_eq!(run(&prog, &tcp6(PEER6, ME6, 80, 60999)), 0);
        assert_eq!(run(&prog, &tcp6(PEER6, ME6, 80, 61064)), 0);
        // Each of the four words of the destination is compared.
        for byte in [0, 5, 10, 15] {
            let mut other = ME6;
            other[byte] ^= 0x80;
            assert_eq!(run(&prog, &tcp6(PEER6, other, 80, 61000)), 0, "byte {byte}");
        }
        // Our own SYN, seen coming back, is to the peer: refused.
        assert_eq!(run(&prog, &our_syn6()), 0);

        let mut udp = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6]).ipv6(PEER6, ME6, 64).udp(53, 61000).write(&mut udp, &[]).unwrap();
        assert_eq!(run(&prog, &udp), 0);

        // TCP behind a hop-by-hop options header: next header 0 at byte 20.
        let mut hop_by_hop = tcp6(PEER6, ME6, 80, 61000);
        hop_by_hop[20] = 0;
        assert_eq!(run(&prog, &hop_by_hop), 0);

        let mut wrong_ethertype = tcp6(PEER6, ME6, 80, 61000);
        wrong_ethertype[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(run(&prog, &wrong_ethertype), 0);
    }

    #[test]
    fn takes_replies_to_each_of_several_addresses_and_no_other() {
        let v4: Vec<IpAddr> = (1..=16).map(|h| IpAddr::from([10, 200, 0, h])).collect();
        let prog = reply_filter(Replies { to: Sources::new(&v4).unwrap(), ports: (61000, 61063), protocol: 6 });
        for h in 1..=16 {
            assert_eq!(run(&prog, &tcp_to([10, 200, 0, h], 61000)), SNAP_LEN, "10.200.0.{h}");
            assert_eq!(run(&prog, &tcp_to([10, 200, 0, h], 61064)), 0, "10.200.0.{h}, not our port");
        }
        assert_eq!(run(&prog, &tcp_to([10, 200, 0, 17], 61000)), 0);
        assert_eq!(run(&prog, &tcp_to([10, 200, 0, 0], 61000)), 0);

        let v6: Vec<IpAddr> = (1..=16u8)
            .map(|h| {
                let mut a = ME6;
                a[15] = h;
                IpAddr::from(a)
            })
            .collect();
        let prog = reply_filter(Replies { to: Sources::new(&v6).unwrap(), ports: (61000, 61063), protocol: 6 });
        for h in 1..=16u8 {
            let mut to = ME6;
            to[15] = h;
            assert_eq!(run(&prog, &tcp6(PEER6, to, 80, 61000)), SNAP_LEN, "::{h}");
            assert_eq!(run(&prog, &tcp6(PEER6, to, 80, 61064)), 0, "::{h}, not our port");
            assert_eq!(run(&prog, &icmp6_to(to, 1, &our_syn6()[14..])), SNAP_LEN, "unreachable to ::{h}");
            // Only the last word differs from an address of ours: each word is compared.
            for byte in [0, 5, 10] {
                let mut other = to;
                other[byte] ^= 0x80;
                assert_eq!(run(&prog, &tcp6(PEER6, other, 80, 61000)), 0, "::{h}, byte {byte}");
            }
        }
        let mut stranger = ME6;
        stranger[15] = 17;
        assert_eq!(run(&prog, &tcp6(PEER6, stranger, 80, 61000)), 0);
    }

    #[test]
    fn v6_accepts_destination_unreachable_only_of_icmpv6() {
        let prog = reply_filter(Replies {
            to: Sources::one(IpAddr::from(ME6)),
            ports: (61000, 61063),
            protocol: field::PROTOCOL_TCP,
        });
        let syn = our_syn6();
        assert_eq!(syn.len(), 90);
        let unreachable = icmp6_to(ME6, 1, &syn[14..]);
        assert_eq!(run(&prog, &unreachable), SNAP_LEN);

        let mut elsewhere = PEER6;
        elsewhere[15] = 9;
        assert_eq!(run(&prog, &icmp6_to(elsewhere, 1, &syn[14..])), 0);
        // Neighbour solicitation and advertisement, router advertisement, echo
        // request and reply, packet too big, time exceeded: the kernel's.
        for type_u8 in [135, 136, 134, 128, 129, 2, 3] {
            assert_eq!(run(&prog, &icmp6_to(ME6, type_u8, &syn[14..])), 0, "type {type_u8}");
        }
    }

    #[test]
    fn v6_drops_truncated_frames_and_ipv4_drops_ipv6() {
        let prog = reply_filter(Replies {
            to: Sources::one(IpAddr::from(ME6)),
            ports: (61000, 61063),
            protocol: field::PROTOCOL_TCP,
        });
        let tcp = tcp6(PEER6, ME6, 80, 61000);
        for len in 0..58 {
            assert_eq!(run(&prog, &tcp[..len]), 0, "TCP cut to {len}");
        }
        let icmp = icmp6_to(ME6, 1, &our_syn6()[14..]);
        for len in 0..55 {
            assert_eq!(run(&prog, &icmp[..len]), 0, "ICMPv6 cut to {len}");
        }
        let v4 = reply_filter(Replies {
            to: Sources::one(IpAddr::from(ME)),
            ports: (61000, 61063),
            protocol: field::PROTOCOL_TCP,
        });
        assert_eq!(run(&v4, &tcp), 0);
        assert_eq!(run(&prog, &tcp_to(ME, 61000)), 0);
    }

    #[test]
    fn a_udp_scan_takes_udp_to_our_ports_and_icmp_errors_not_tcp() {
        let prog = reply_filter(Replies {
            to: Sources::one(IpAddr::from(ME)),
            ports: (61000, 61063),
            protocol: field::PROTOCOL_UDP,
        });
        let udp = |dport: u16| {
            let mut out = Vec::new();
            PacketBuilder::ethernet2([1; 6], [2; 6])
                .ipv4([10, 201, 0, 2], ME, 64)
                .udp(53, dport)
                .write(&mut out, &[0; 1400])
                .unwrap();
            out
        };
        // A long answer arrives whole.
        assert_eq!(run(&prog, &udp(61000)), SNAP_LEN);
        assert!(udp(61000).len() as u32 <= SNAP_LEN);
        assert_eq!(run(&prog, &udp(61064)), 0);
        assert_eq!(run(&prog, &tcp_to(ME, 61000)), 0);
        let prog6 = reply_filter(Replies {
            to: Sources::one(IpAddr::from(ME6)),
            ports: (61000, 61063),
            protocol: field::PROTOCOL_UDP,
        });
        let mut udp6 = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6]).ipv6(PEER6, ME6, 64).udp(53, 61003).write(&mut udp6, &[]).unwrap();
        assert_eq!(run(&prog6, &udp6), SNAP_LEN);
        assert_eq!(run(&prog6, &tcp6(PEER6, ME6, 80, 61000)), 0);
        assert_eq!(run(&prog6, &icmp6_to(ME6, 129, &[0; 8])), 0, "echo replies are an echo scan's");
    }

    #[test]
    fn an_echo_scan_takes_icmp_only() {
        let prog = reply_filter(Replies {
            to: Sources::one(IpAddr::from(ME)),
            ports: (61000, 61063),
            protocol: field::PROTOCOL_ICMP,
        });
        assert_eq!(run(&prog, &tcp_to(ME, 61000)), 0);
        let mut reply = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([10, 201, 0, 2], ME, 64)
            .icmpv4_echo_reply(61000, 1)
            .write(&mut reply, &[0; 8])
            .unwrap();
        assert_eq!(run(&prog, &reply), SNAP_LEN);
        let prog6 = reply_filter(Replies {
            to: Sources::one(IpAddr::from(ME6)),
            ports: (61000, 61063),
            protocol: field::PROTOCOL_ICMPV6,
        });
        assert_eq!(run(&prog6, &icmp6_to(ME6, 129, &[0; 8])), SNAP_LEN);
        assert_eq!(run(&prog6, &icmp6_to(ME6, 1, &our_syn6()[14..])), SNAP_LEN);
        for type_u8 in [128, 135, 136] {
            assert_eq!(run(&prog6, &icmp6_to(ME6, type_u8, &[0; 8])), 0, "type {type_u8}");
        }
        assert_eq!(run(&prog6, &tcp6(PEER6, ME6, 80, 61000)), 0);
    }
}
