//! The classic BPF program that lets only possible replies reach a packet socket:
//! IPv4 to our address that is either ICMP or unfragmented TCP to one of our
//! source ports. Everything else stays in the kernel.

use std::net::Ipv4Addr;

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

/// Bytes of each accepted frame handed to userspace: Ethernet, IPv4 with options,
/// TCP with options, or an ICMP error quoting our whole SYN, all fit.
pub const SNAP_LEN: u32 = 256;

pub fn reply_filter(src_ip: Ipv4Addr, ports: (u16, u16)) -> Vec<Insn> {
    const ACCEPT: u8 = 13;
    const DROP: u8 = 14;
    let i = |code, k| Insn { code, jt: 0, jf: 0, k };
    // Jump targets are absolute here and made relative below.
    let j = |code, k, jt: u8, jf: u8| Insn { code, jt, jf, k };
    let next = |pc: u8| pc + 1;
    let mut prog = vec![
        i(LDH_ABS, 12),                             // 0: ethertype
        j(JEQ, 0x0800, next(1), DROP),              // 1
        i(LDW_ABS, 30),                             // 2: IPv4 destination
        j(JEQ, u32::from(src_ip), next(3), DROP),   // 3
        i(LDB_ABS, 23),                             // 4: protocol
        j(JEQ, 1, ACCEPT, next(5)),                 // 5: ICMP
        j(JEQ, 6, next(6), DROP),                   // 6: TCP
        i(LDH_ABS, 20),                             // 7: flags and fragment offset
        j(JSET, 0x1fff, DROP, next(8)),             // 8: not a first fragment
        i(LDX_MSH, 14),                             // 9: X = IPv4 header length
        i(LDH_IND, 16),                             // 10: TCP destination port
        j(JGE, u32::from(ports.0), next(11), DROP), // 11
        j(JGT, u32::from(ports.1), DROP, ACCEPT),   // 12
        i(RET, SNAP_LEN),                           // 13: accept
        i(RET, 0),                                  // 14: drop
    ];
    for (pc, insn) in prog.iter_mut().enumerate() {
        if insn.code & 0x07 == 0x05 {
            insn.jt -= pc as u8 + 1;
            insn.jf -= pc as u8 + 1;
        }
    }
    prog
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

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
        let prog = reply_filter(Ipv4Addr::from(ME), (61000, 61063));
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
}
