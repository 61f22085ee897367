//! ARP request and reply frames (RFC 826), for a next hop the kernel has no entry for.

use std::net::Ipv4Addr;

pub const ARP_FRAME_LEN: usize = 42;

pub fn request(src_mac: [u8; 6], src_ip: Ipv4Addr, target: Ipv4Addr) -> [u8; ARP_FRAME_LEN] {
    let mut f = [0u8; ARP_FRAME_LEN];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    // Ethernet hardware, IPv4 protocol, address lengths 6 and 4, operation 1 (request).
    f[14..22].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&src_mac);
    f[28..32].copy_from_slice(&src_ip.octets());
    f[38..42].copy_from_slice(&target.octets());
    f
}

/// The hardware address in an ARP reply from `target`, if `frame` is one.
pub fn reply_from(frame: &[u8], target: Ipv4Addr) -> Option<[u8; 6]> {
    let f = frame.get(..ARP_FRAME_LEN)?;
    let is_reply = f[12..14] == [0x08, 0x06] && f[14..22] == [0, 1, 0x08, 0x00, 6, 4, 0, 2];
    (is_reply && f[28..32] == target.octets()).then(|| f[22..28].try_into().expect("six bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_byte_exact() {
        let f = request([2, 0, 0, 0, 0, 1], Ipv4Addr::new(10, 200, 0, 1), Ipv4Addr::new(10, 200, 0, 2));
        #[rustfmt::skip]
        let want = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x06,
            0, 1, 0x08, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 10, 200, 0, 1,
            0, 0, 0, 0, 0, 0, 10, 200, 0, 2,
        ];
        assert_eq!(f, want);
    }

    #[test]
    fn reply_is_recognised_only_from_the_asked_address() {
        let mut f = request([2, 0, 0, 0, 0, 9], Ipv4Addr::new(10, 200, 0, 2), Ipv4Addr::new(10, 200, 0, 1));
        assert_eq!(reply_from(&f, Ipv4Addr::new(10, 200, 0, 2)), None, "a request is no reply");
        f[21] = 2;
        assert_eq!(reply_from(&f, Ipv4Addr::new(10, 200, 0, 2)), Some([2, 0, 0, 0, 0, 9]));
        assert_eq!(reply_from(&f, Ipv4Addr::new(10, 200, 0, 3)), None);
        assert_eq!(reply_from(&f[..41], Ipv4Addr::new(10, 200, 0, 2)), None);
    }
}
