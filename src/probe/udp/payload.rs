//! Per-port UDP payloads: datagrams that make a real service answer, written from the protocol
//! specifications. Where the protocol has a field the server copies into its reply, the payload
//! marks it, so that each probe carries a keyed tag and a reply is validated without state.

use std::ops::Range;

/// A probe's datagram for one destination port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// The bytes sent, with the identifier field zeroed.
    pub bytes: Vec<u8>,
    /// Where the per-probe identifier goes in `bytes` (length 2, 4 or 8), if the protocol echoes one.
    pub id: Option<Range<usize>>,
    /// How the reply carries the identifier back.
    pub echo: Echo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    /// No identifier: any datagram from the target's port is an answer.
    None,
    /// The reply repeats the identifier at this byte range (DNS ID, RPC XID, IKE SPI, NTP origin timestamp...).
    At { start: usize, len: usize },
    /// SNMP: the request-id INTEGER inside the BER-encoded response PDU.
    SnmpRequestId,
}

/// The built-in payload for `port`: DNS 53, NTP 123, SNMP 161, SSDP 1900, mDNS 5353,
/// NetBIOS name service 137, IKE 500, memcached 11211, portmapper 111. Other ports: None
/// (the scanner then sends an empty datagram).
pub fn builtin(port: u16) -> Option<Payload> {
    Some(match port {
        53 => dns(),
        111 => portmapper(),
        123 => ntp(),
        137 => netbios(),
        161 => snmp(),
        500 => ike(),
        1900 => ssdp(),
        5353 => mdns(),
        11211 => memcached(),
        _ => return None,
    })
}

/// A payload given by the user (`--udp-payload PORT:HEX`): no identifier, `Echo::None`.
pub fn custom(bytes: Vec<u8>) -> Payload {
    Payload { bytes, id: None, echo: Echo::None }
}

/// Parses one `--udp-payload` value "PORT:HEX" (hex digits, even count, may be empty; port 1-65535).
/// Err is a one-line human message (no trailing period) such as "--udp-payload 53:zz: not hex".
pub fn parse_override(text: &str) -> Result<(u16, Vec<u8>), String> {
    let fail = |why: &str| format!("--udp-payload {text}: {why}");
    let (port, hex) = text.split_once(':').ok_or_else(|| fail("expected PORT:HEX"))?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(fail("port is not a number"));
    }
    let port = port.parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| fail("port must be 1-65535"))?;
    let nibbles = hex
        .chars()
        .map(|c| c.to_digit(16).map(|d| d as u8))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| fail("not hex"))?;
    if nibbles.len() % 2 != 0 {
        return Err(fail("odd number of hex digits"));
    }
    Ok((port, nibbles.chunks_exact(2).map(|pair| pair[0] << 4 | pair[1]).collect()))
}

impl Payload {
    /// Writes the payload for one probe at the start of `out` (which must
    /// hold `bytes.len()` bytes), with the low `id.len()` bytes of `tag`
    /// (big-endian) in the id field; returns its length.
    pub fn write(&self, tag: u64, out: &mut [u8]) -> usize {
        let out = &mut out[..self.bytes.len()];
        out.copy_from_slice(&self.bytes);
        if let Some(range) = &self.id {
            let tag = tag.to_be_bytes();
            if let (Some(dst), Some(src)) = (out.get_mut(range.clone()), low_bytes(&tag, range.len())) {
                dst.copy_from_slice(src);
            }
        }
        out.len()
    }

    /// Whether `reply` (the UDP payload received from the probed port) answers the probe
    /// whose tag was `tag`: true for Echo::None; for At, the bytes at that range equal the
    /// tag's low bytes as written; for SnmpRequestId, the BER response parses far enough to
    /// find the request-id and it equals the tag's low 4 bytes as an INTEGER. Never panics
    /// on any input (short, truncated, garbage, huge lengths).
    pub fn answers(&self, tag: u64, reply: &[u8]) -> bool {
        match self.echo {
            Echo::None => true,
            Echo::At { start, len } => {
                let tag = tag.to_be_bytes();
                let echoed = start.checked_add(len).and_then(|end| reply.get(start..end));
                matches!((echoed, low_bytes(&tag, len)), (Some(a), Some(b)) if a == b)
            }
            Echo::SnmpRequestId => snmp_request_id(reply).is_some_and(|id| {
                // RFC 3416 §3 makes request-id a signed 32-bit INTEGER, so an agent reads our four
                // bytes as signed and echoes the value minimally (0xFFFFFFFF comes back as FF);
                // agents that keep it unsigned prepend 00 instead. Each value still maps to one tag.
                let sent = tag as u32;
                id == i64::from(sent as i32) || id == i64::from(sent)
            }),
        }
    }
}

/// The last `len` bytes of a big-endian tag, if it has that many.
fn low_bytes(tag: &[u8; 8], len: usize) -> Option<&[u8]> {
    tag.get(tag.len().checked_sub(len)?..)
}

/// A DNS query message (RFC 1035 §4.1.1 header, §4.1.2 question) with the ID at bytes 0..2.
fn dns_query(flags: u16, labels: &[&str], qtype: u16, qclass: u16) -> Payload {
    // ID 0 until written, then QDCOUNT 1 and empty answer, authority and additional sections.
    let mut bytes = vec![0, 0];
    bytes.extend_from_slice(&flags.to_be_bytes());
    bytes.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    for label in labels {
        bytes.push(label.len() as u8);
        bytes.extend_from_slice(label.as_bytes());
    }
    bytes.push(0);
    bytes.extend_from_slice(&qtype.to_be_bytes());
    bytes.extend_from_slice(&qclass.to_be_bytes());
    Payload { bytes, id: Some(0..2), echo: Echo::At { start: 0, len: 2 } }
}

/// `version.bind` CH TXT with RD set (RFC 1035 §4.1.1; TXT = 16 §3.2.2, CH = 3 §3.2.4): dnsmasq
/// and BIND answer it from their own data, so no upstream or zone is needed.
fn dns() -> Payload {
    dns_query(0x0100, &["version", "bind"], 16, 3)
}

/// `_services._dns-sd._udp.local` PTR IN (RFC 6763 §9). Sent from a port other than 5353 it is a
/// legacy unicast query (RFC 6762 §6.7): the responder answers by unicast and repeats the ID.
/// RD stays clear (RFC 6762 §18.6).
fn mdns() -> Payload {
    dns_query(0, &["_services", "_dns-sd", "_udp", "local"], 12, 1)
}

/// NetBIOS NODE STATUS REQUEST (RFC 1002 §4.2.17) for the wildcard name "*": every NBNS node
/// answers it with a NODE STATUS RESPONSE (§4.2.18) that repeats NAME_TRN_ID.
fn netbios() -> Payload {
    // NAME_TRN_ID 0 until written; opcode query with no NM_FLAGS (a unicast request); QDCOUNT 1.
    let mut bytes = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    // First-level encoding (RFC 1001 §14.1): each nibble of the 16-byte NUL-padded name becomes
    // 'A' + nibble, giving a 32-byte label; the scope is empty.
    let mut name = [0u8; 16];
    name[0] = b'*';
    bytes.push(32);
    for byte in name {
        bytes.extend_from_slice(&[b'A' + (byte >> 4), b'A' + (byte & 0x0f)]);
    }
    bytes.push(0);
    // QUESTION_TYPE NBSTAT (0x0021), QUESTION_CLASS IN.
    bytes.extend_from_slice(&[0x00, 0x21, 0x00, 0x01]);
    Payload { bytes, id: Some(0..2), echo: Echo::At { start: 0, len: 2 } }
}

/// A 48-byte NTPv4 client request (RFC 5905 §7.3): LI 0, VN 4, Mode 3, all else zero. The server
/// copies the request's Transmit Timestamp (bytes 40..48) into its Origin Timestamp (24..32),
/// §8 "org = T1"; that echo is the protocol's own defence against spoofed replies.
fn ntp() -> Payload {
    let mut bytes = vec![0; 48];
    bytes[0] = 0x23;
    Payload { bytes, id: Some(40..48), echo: Echo::At { start: 24, len: 8 } }
}

/// A BER TLV with a definite length (X.690 §8.1.3), short form when it fits.
fn ber(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let contents = parts.concat();
    let mut out = vec![tag];
    match u8::try_from(contents.len()) {
        Ok(len) if len < 0x80 => out.push(len),
        _ => {
            let len = (contents.len() as u32).to_be_bytes();
            let skip = len.iter().take_while(|&&b| b == 0).count();
            out.push(0x80 | (len.len() - skip) as u8);
            out.extend_from_slice(&len[skip..]);
        }
    }
    out.extend_from_slice(&contents);
    out
}

/// SNMPv2c GetRequest for sysDescr.0 with community "public" (RFC 3416 §3 PDU, RFC 1901 §3 message,
/// RFC 3418 sysDescr 1.3.6.1.2.1.1.1). The request-id is always four content bytes so that any tag
/// fits in place; the agent answers with a GetResponse-PDU carrying the same request-id.
fn snmp() -> Payload {
    // OID 1.3.6.1.2.1.1.1.0: the first two arcs share one byte, 40 * 1 + 3 = 0x2b (X.690 §8.19.4).
    let oid = ber(0x06, &[&[0x2b, 6, 1, 2, 1, 1, 1, 0]]);
    let varbinds = ber(0x30, &[&ber(0x30, &[&oid, &[0x05, 0x00]])]);
    let (request_id, error_status, error_index) = ([0x02, 0x04, 0, 0, 0, 0], [0x02, 0x01, 0], [0x02, 0x01, 0]);
    let pdu = [&request_id[..], &error_status, &error_index, &varbinds].concat();
    // Version 1 means SNMPv2c (RFC 1901 §3).
    let bytes = ber(0x30, &[&[0x02, 0x01, 0x01], &ber(0x04, &[b"public"]), &ber(0xa0, &[&pdu])]);
    // The PDU closes the message and opens with the request-id TLV, so its contents follow `02 04`.
    let start = bytes.len() - pdu.len() + 2;
    Payload { bytes, id: Some(start..start + 4), echo: Echo::SnmpRequestId }
}

/// One TLV of `data` as (tag, contents, rest); None unless it fits entirely.
fn ber_tlv(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = data.split_first()?;
    // SNMP uses only low tag numbers; the multi-byte form would need its own parsing.
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        // The indefinite form (0x80) is forbidden in SNMP (RFC 3417 §8); four length bytes
        // already exceed any datagram.
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let (digits, rest) = rest.split_at_checked(count)?;
        (digits.iter().fold(0usize, |len, &d| len << 8 | usize::from(d)), rest)
    };
    let (contents, rest) = rest.split_at_checked(len)?;
    Some((tag, contents, rest))
}

/// The request-id of an SNMP message holding a GetResponse-PDU, sign-extended (X.690 §8.3).
fn snmp_request_id(reply: &[u8]) -> Option<i64> {
    let expect =
        |data, want: u8| ber_tlv(data).filter(|&(tag, _, _)| tag == want).map(|(_, contents, rest)| (contents, rest));
    let (message, _) = expect(reply, 0x30)?;
    let (_version, rest) = expect(message, 0x02)?;
    let (_community, rest) = expect(rest, 0x04)?;
    let (pdu, _) = expect(rest, 0xa2)?;
    let (id, _) = expect(pdu, 0x02)?;
    // Five bytes hold a 32-bit value with a sign byte in front; more would not be a request-id.
    let (&first, _) = id.split_first()?;
    if id.len() > 5 {
        return None;
    }
    let sign = if first & 0x80 != 0 { -1 } else { 0 };
    Some(id.iter().fold(sign, |value, &b| value << 8 | i64::from(b)))
}

/// An SSDP search for all devices and services (UPnP Device Architecture 1.1 §1.3.2). No field
/// is echoed, so any datagram from the port counts.
fn ssdp() -> Payload {
    let bytes =
        b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: ssdp:all\r\n\r\n";
    Payload { bytes: bytes.to_vec(), id: None, echo: Echo::None }
}

/// An ISAKMP Main Mode (Identity Protection) first message: header (RFC 2408 §3.1), one SA payload
/// (§3.4, IPsec DOI and SIT_IDENTITY_ONLY from RFC 2407 §4.2/§4.6.1), one proposal (§3.5) with one
/// KEY_IKE transform (§3.6, RFC 2409 Appendix A attributes). A responder answers with its own SA or
/// a notification, either way repeating the initiator cookie.
fn ike() -> Payload {
    // TV attributes (AF bit set): AES-CBC (RFC 3602 §5.1) with a 128-bit key, SHA, pre-shared key,
    // the 2048-bit MODP group 14 (RFC 3526 §3), life in seconds: 28800.
    let attributes: [[u8; 4]; 7] = [
        [0x80, 0x01, 0x00, 0x07],
        [0x80, 0x0e, 0x00, 0x80],
        [0x80, 0x02, 0x00, 0x02],
        [0x80, 0x03, 0x00, 0x01],
        [0x80, 0x04, 0x00, 0x0e],
        [0x80, 0x0b, 0x00, 0x01],
        [0x80, 0x0c, 0x70, 0x80],
    ];
    let attributes = attributes.concat();
    // Each generic payload header is next payload, reserved, then the payload's own length; the
    // last proposal and transform say "none" (0) as next payload.
    let header = |next: u8, body_len: usize| {
        let mut h = vec![next, 0];
        h.extend_from_slice(&((4 + body_len) as u16).to_be_bytes());
        h
    };
    // Transform #1 KEY_IKE; proposal #1 PROTO_ISAKMP, no SPI, one transform.
    let transform = [header(0, 4 + attributes.len()), vec![1, 1, 0, 0], attributes].concat();
    let proposal = [header(0, 4 + transform.len()), vec![1, 1, 0, 1], transform].concat();
    let doi_situation = [0, 0, 0, 1, 0, 0, 0, 1];
    let sa = [header(0, doi_situation.len() + proposal.len()), doi_situation.to_vec(), proposal].concat();
    // Both cookies zero until the initiator cookie is written; next payload SA (1), version 1.0,
    // exchange Identity Protection (2), no flags, message ID 0, then the whole message's length.
    let mut bytes = vec![0; 16];
    bytes.extend_from_slice(&[1, 0x10, 2, 0, 0, 0, 0, 0]);
    bytes.extend_from_slice(&((bytes.len() + 4 + sa.len()) as u32).to_be_bytes());
    bytes.extend_from_slice(&sa);
    Payload { bytes, id: Some(0..8), echo: Echo::At { start: 0, len: 8 } }
}

/// memcached "stats" over UDP (memcached protocol.txt, "UDP protocol"): the frame header's request
/// ID comes back in every response datagram; sequence 0 of 1 datagram.
fn memcached() -> Payload {
    let mut bytes = vec![0, 0, 0, 0, 0, 1, 0, 0];
    bytes.extend_from_slice(b"stats\r\n");
    Payload { bytes, id: Some(0..2), echo: Echo::At { start: 0, len: 2 } }
}

/// ONC RPC CALL (RFC 5531 §9) of the portmapper's NULL procedure (RFC 1833 §3.2: program 100000,
/// version 2, procedure 0) with AUTH_NONE credentials and verifier; the reply repeats the XID.
fn portmapper() -> Payload {
    let words: [u32; 10] = [0, 0, 2, 100_000, 2, 0, 0, 0, 0, 0];
    let bytes = words.iter().flat_map(|w| w.to_be_bytes()).collect();
    Payload { bytes, id: Some(0..4), echo: Echo::At { start: 0, len: 4 } }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAG: u64 = 0x0123_4567_89ab_cdef;
    const PORTS: [u16; 9] = [53, 111, 123, 137, 161, 500, 1900, 5353, 11211];

    fn written(port: u16, tag: u64) -> Vec<u8> {
        written_by(&builtin(port).expect("built-in port"), tag)
    }

    fn written_by(p: &Payload, tag: u64) -> Vec<u8> {
        let mut out = vec![0xaa; 2048];
        let len = p.write(tag, &mut out);
        out.truncate(len);
        out
    }

    /// xorshift64 (Marsaglia 2003): deterministic garbage without crates.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn bytes(&mut self, len: usize) -> Vec<u8> {
            (0..len).map(|_| self.next() as u8).collect()
        }
    }

    #[test]
    fn other_ports_have_no_payload() {
        for port in [0, 1, 52, 54, 124, 162, 1901, 5354, 11212, 65535] {
            assert_eq!(builtin(port), None, "port {port}");
        }
    }

    #[test]
    fn id_fields_are_zeroed_in_range_and_match_the_echo() {
        for port in PORTS {
            let p = builtin(port).expect("built-in port");
            match (&p.id, p.echo) {
                (None, Echo::None) => {}
                (Some(id), echo) => {
                    assert!(matches!(id.len(), 2 | 4 | 8), "port {port}");
                    assert!(p.bytes.get(id.clone()).is_some_and(|b| b.iter().all(|&x| x == 0)), "port {port}");
                    match echo {
                        Echo::At { len, .. } => assert_eq!(len, id.len(), "port {port}"),
                        Echo::SnmpRequestId => assert_eq!(id.len(), 4),
                        Echo::None => panic!("port {port}: id without echo"),
                    }
                }
                (None, echo) => panic!("port {port}: {echo:?} without id"),
            }
        }
    }

    #[test]
    fn dns_bytes() {
        #[rustfmt::skip]
        let expected = [
            0xcd, 0xef, // ID: the tag's low 2 bytes
            0x01, 0x00, // standard query, RD
            0, 1, 0, 0, 0, 0, 0, 0, // QDCOUNT 1
            7, b'v', b'e', b'r', b's', b'i', b'o', b'n', 4, b'b', b'i', b'n', b'd', 0,
            0x00, 0x10, // TXT
            0x00, 0x03, // CH
        ];
        assert_eq!(written(53, TAG), expected);
    }

    #[test]
    fn mdns_bytes() {
        #[rustfmt::skip]
        let expected = [
            0xcd, 0xef, // ID
            0x00, 0x00, // standard query, RD clear
            0, 1, 0, 0, 0, 0, 0, 0, // QDCOUNT 1
            9, b'_', b's', b'e', b'r', b'v', b'i', b'c', b'e', b's',
            7, b'_', b'd', b'n', b's', b'-', b's', b'd',
            4, b'_', b'u', b'd', b'p',
            5, b'l', b'o', b'c', b'a', b'l', 0,
            0x00, 0x0c, // PTR
            0x00, 0x01, // IN
        ];
        assert_eq!(written(5353, TAG), expected);
    }

    #[test]
    fn netbios_bytes() {
        let mut expected = vec![
            0xcd, 0xef, // NAME_TRN_ID
            0x00, 0x00, // query, no flags
            0, 1, 0, 0, 0, 0, 0, 0,    // QDCOUNT 1
            0x20, // 32-byte encoded name
            b'C', b'K', // '*' = 0x2a
        ];
        expected.extend_from_slice(&[b'A'; 30]); // 15 NULs
        expected.extend_from_slice(&[0, 0x00, 0x21, 0x00, 0x01]); // empty scope, NBSTAT, IN
        assert_eq!(expected.len(), 50);
        assert_eq!(written(137, TAG), expected);
    }

    #[test]
    fn ntp_bytes() {
        let mut expected = [0u8; 48];
        expected[0] = 0x23; // LI 0, VN 4, Mode 3 (client)
        expected[40..48].copy_from_slice(&[0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]); // Transmit Timestamp
        assert_eq!(written(123, TAG), expected);
    }

    #[test]
    fn snmp_bytes() {
        #[rustfmt::skip]
        let expected = [
            0x30, 0x29, // Message SEQUENCE, 41 bytes
            0x02, 0x01, 0x01, // version: SNMPv2c
            0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', // community
            0xa0, 0x1c, // GetRequest-PDU, 28 bytes
            0x02, 0x04, 0x89, 0xab, 0xcd, 0xef, // request-id: the tag's low 4 bytes
            0x02, 0x01, 0x00, // error-status
            0x02, 0x01, 0x00, // error-index
            0x30, 0x0e, // VarBindList
            0x30, 0x0c, // VarBind
            0x06, 0x08, 0x2b, 0x06, 0x01, 0x02, 0x01, 0x01, 0x01, 0x00, // sysDescr.0
            0x05, 0x00, // NULL
        ];
        assert_eq!(written(161, TAG), expected);
        assert_eq!(builtin(161).and_then(|p| p.id), Some(17..21));
    }

    #[test]
    fn ssdp_bytes() {
        let expected = "M-SEARCH * HTTP/1.1\r\n\
                        HOST: 239.255.255.250:1900\r\n\
                        MAN: \"ssdp:discover\"\r\n\
                        MX: 1\r\n\
                        ST: ssdp:all\r\n\
                        \r\n";
        assert_eq!(written(1900, TAG), expected.as_bytes());
    }

    #[test]
    fn ike_bytes() {
        #[rustfmt::skip]
        let expected = [
            0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, // initiator cookie: the tag
            0, 0, 0, 0, 0, 0, 0, 0, // responder cookie
            0x01, // next payload: SA
            0x10, // version 1.0
            0x02, // Identity Protection (Main Mode)
            0x00, // flags
            0, 0, 0, 0, // message ID
            0, 0, 0, 84, // length
            // SA payload
            0x00, 0x00, 0x00, 56, // no next payload, length 56
            0, 0, 0, 1, // DOI: IPsec
            0, 0, 0, 1, // SIT_IDENTITY_ONLY
            // Proposal payload
            0x00, 0x00, 0x00, 44, // last proposal, length 44
            1, 1, 0, 1, // proposal #1, PROTO_ISAKMP, SPI size 0, 1 transform
            // Transform payload
            0x00, 0x00, 0x00, 36, // last transform, length 36
            1, 1, 0, 0, // transform #1, KEY_IKE, reserved
            0x80, 0x01, 0x00, 0x07, // encryption: AES-CBC
            0x80, 0x0e, 0x00, 0x80, // key length 128
            0x80, 0x02, 0x00, 0x02, // hash: SHA
            0x80, 0x03, 0x00, 0x01, // authentication: pre-shared key
            0x80, 0x04, 0x00, 0x0e, // group 14
            0x80, 0x0b, 0x00, 0x01, // life type: seconds
            0x80, 0x0c, 0x70, 0x80, // life duration: 28800
        ];
        assert_eq!(written(500, TAG), expected);
    }

    #[test]
    fn memcached_bytes() {
        #[rustfmt::skip]
        let expected = [
            0xcd, 0xef, // request ID
            0x00, 0x00, // sequence number
            0x00, 0x01, // total datagrams
            0x00, 0x00, // reserved
            b's', b't', b'a', b't', b's', b'\r', b'\n',
        ];
        assert_eq!(written(11211, TAG), expected);
    }

    #[test]
    fn portmapper_bytes() {
        #[rustfmt::skip]
        let expected = [
            0x89, 0xab, 0xcd, 0xef, // XID
            0, 0, 0, 0, // CALL
            0, 0, 0, 2, // RPC version 2
            0x00, 0x01, 0x86, 0xa0, // program 100000
            0, 0, 0, 2, // version 2
            0, 0, 0, 0, // procedure NULL
            0, 0, 0, 0, 0, 0, 0, 0, // credentials: AUTH_NONE, empty
            0, 0, 0, 0, 0, 0, 0, 0, // verifier: AUTH_NONE, empty
        ];
        assert_eq!(written(111, TAG), expected);
    }

    #[test]
    fn write_replaces_the_previous_contents() {
        let p = builtin(53).expect("dns");
        let mut out = vec![0xaa; 2048];
        p.write(1, &mut out);
        let len = p.write(2, &mut out);
        out.truncate(len);
        assert_eq!(out.len(), p.bytes.len());
        assert_eq!(out[..2], [0, 2]);
    }

    /// A plausible reply for each port with an echoed id, carrying `tag`.
    fn reply(port: u16, tag: u64) -> Vec<u8> {
        let t = tag.to_be_bytes();
        let [.., a, b] = t;
        match port {
            53 => {
                let mut r = written(53, tag);
                r[2..4].copy_from_slice(&[0x85, 0x80]); // QR AA RD RA
                r[6..8].copy_from_slice(&[0, 1]); // ANCOUNT
                // Pointer to the question name, TXT CH, TTL 0, one string.
                r.extend_from_slice(&[0xc0, 0x0c, 0x00, 0x10, 0x00, 0x03, 0, 0, 0, 0, 0, 13, 12]);
                r.extend_from_slice(b"dnsmasq-2.90");
                r
            }
            5353 => {
                let mut r = written(5353, tag);
                r[2..4].copy_from_slice(&[0x84, 0x00]); // QR AA
                r[6..8].copy_from_slice(&[0, 1]);
                r.extend_from_slice(&[0xc0, 0x0c, 0x00, 0x0c, 0x00, 0x01, 0, 0, 0x11, 0x94, 0, 2, 0xc0, 0x0c]);
                r
            }
            137 => {
                let mut r = vec![a, b, 0x84, 0x00, 0, 0, 0, 1, 0, 0, 0, 0];
                r.extend_from_slice(&written(137, tag)[12..50]);
                r.extend_from_slice(&[0, 0, 0, 0, 0, 65, 1]); // TTL 0, RDLENGTH 65, one name
                r.extend_from_slice(b"HOST           \x00\x04\x00");
                r.extend_from_slice(&[0; 46]); // statistics
                r
            }
            123 => {
                let mut r = vec![0u8; 48];
                r[0] = 0x24; // VN 4, Mode 4 (server)
                r[1] = 2;
                r[24..32].copy_from_slice(&t);
                r[32..48].copy_from_slice(&[0xe9; 16]);
                r
            }
            500 => {
                let mut r = t.to_vec();
                r.extend_from_slice(&[0x5a; 8]); // responder cookie
                r.extend_from_slice(&[11, 0x10, 5, 0, 0, 0, 0, 1, 0, 0, 0, 40]); // Notification, Informational
                r.extend_from_slice(&[0, 0, 0, 12, 0, 0, 0, 1, 1, 0, 0, 14]); // NO-PROPOSAL-CHOSEN
                r
            }
            11211 => {
                let mut r = vec![a, b, 0, 0, 0, 1, 0, 0];
                r.extend_from_slice(b"STAT pid 1\r\nEND\r\n");
                r
            }
            111 => {
                let mut r = t[4..].to_vec();
                r.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // accepted, success
                r
            }
            161 => snmp_response(&(tag as u32).to_be_bytes()),
            _ => unreachable!("port {port}"),
        }
    }

    fn snmp_response(request_id: &[u8]) -> Vec<u8> {
        let oid = ber(0x06, &[&[0x2b, 6, 1, 2, 1, 1, 1, 0]]);
        let varbind = ber(0x30, &[&oid, &ber(0x04, &[b"Linux host 6.12.0 x86_64"])]);
        let pdu = ber(0xa2, &[&ber(0x02, &[request_id]), &[0x02, 0x01, 0, 0x02, 0x01, 0], &ber(0x30, &[&varbind])]);
        ber(0x30, &[&[0x02, 0x01, 0x01], &ber(0x04, &[b"public"]), &pdu])
    }

    fn id_end(p: &Payload) -> usize {
        match p.echo {
            Echo::At { start, len } => start + len,
            Echo::None => 0,
            Echo::SnmpRequestId => usize::MAX,
        }
    }

    #[test]
    fn replies_round_trip() {
        for port in PORTS.into_iter().filter(|&p| p != 1900) {
            let p = builtin(port).expect("built-in port");
            for tag in [TAG, 0, u64::MAX, 0x8000_0000, 0x7fff_ffff, 0xffff_ff80, 0x1234] {
                let r = reply(port, tag);
                assert!(p.answers(tag, &r), "port {port} tag {tag:#x}");
                assert!(!p.answers(tag ^ 1, &r), "port {port} tag {tag:#x}: wrong id");
                assert!(!p.answers(tag ^ 0x80, &r), "port {port} tag {tag:#x}: wrong id");
                // Bits above a short id field are not sent, so they cannot be checked.
                let sent_all = p.id.as_ref().is_some_and(|id| id.len() == 8);
                assert_eq!(p.answers(tag ^ 1 << 63, &r), !sent_all, "port {port} tag {tag:#x}");
            }
        }
    }

    #[test]
    fn truncated_replies_fail() {
        for port in PORTS.into_iter().filter(|&p| p != 1900) {
            let p = builtin(port).expect("built-in port");
            let r = reply(port, TAG);
            for len in 0..r.len().min(id_end(&p)) {
                assert!(!p.answers(TAG, &r[..len]), "port {port} truncated to {len}");
            }
        }
    }

    #[test]
    fn echo_none_accepts_anything() {
        for p in [builtin(1900).expect("ssdp"), custom(vec![1, 2, 3])] {
            assert!(p.answers(TAG, b"HTTP/1.1 200 OK\r\nST: upnp:rootdevice\r\n\r\n"));
            assert!(p.answers(TAG, &[]));
        }
    }

    #[test]
    fn custom_is_sent_verbatim() {
        let p = custom(vec![0xde, 0xad]);
        assert_eq!(p, Payload { bytes: vec![0xde, 0xad], id: None, echo: Echo::None });
        assert_eq!(written_by(&p, TAG), [0xde, 0xad]);
    }

    #[test]
    fn snmp_request_ids_in_minimal_encodings() {
        let p = builtin(161).expect("snmp");
        let cases: [(u32, &[u8]); 12] = [
            (0, &[0x00]),
            (5, &[0x05]),
            (0x7f, &[0x7f]),
            (0x80, &[0x00, 0x80]), // high bit set: a leading 00 keeps it positive
            (0x1234, &[0x12, 0x34]),
            (0x8000, &[0x00, 0x80, 0x00]),
            (0x12_3456, &[0x12, 0x34, 0x56]),
            (0x89ab_cdef, &[0x00, 0x89, 0xab, 0xcd, 0xef]), // echoed as unsigned
            (0x89ab_cdef, &[0x89, 0xab, 0xcd, 0xef]),       // echoed as the signed value we sent
            (0xffff_ffff, &[0xff]),                         // -1
            (0xffff_ffff, &[0x00, 0xff, 0xff, 0xff, 0xff]),
            (0xffff_ff80, &[0x80]), // -128
        ];
        for (id, encoded) in cases {
            let tag = 0xdead_beef_0000_0000 | u64::from(id);
            assert!(p.answers(tag, &snmp_response(encoded)), "{id:#x} as {encoded:02x?}");
        }
        let wrong: [(u32, &[u8]); 6] = [
            (5, &[0x06]),
            (0x80, &[0x80]),              // -128, not 128
            (0xffff_ffff, &[0x00, 0xff]), // 255
            (0x7f, &[0x00, 0x00, 0x00, 0x00, 0x00, 0x7f]),
            (0, &[]),
            (0x89ab_cdef, &[0x89, 0xab, 0xcd]),
        ];
        for (id, encoded) in wrong {
            assert!(!p.answers(u64::from(id), &snmp_response(encoded)), "{id:#x} as {encoded:02x?}");
        }
    }

    #[test]
    fn snmp_structure_is_checked() {
        let p = builtin(161).expect("snmp");
        let mut request = written_by(&p, TAG);
        // Our own request reflected back is not a response...
        assert!(!p.answers(TAG, &request));
        // ...but with the GetResponse tag its lengths parse through to the request-id.
        request[13] = 0xa2;
        assert!(p.answers(TAG, &request));
        // Long-form lengths, including non-minimal ones.
        let id = ber(0x02, &[&[0x09]]);
        let pdu = [&[0xa2, 0x82, 0x00, id.len() as u8 + 6][..], &id, &[0x02, 0x01, 0, 0x02, 0x01, 0]].concat();
        let body = [&[0x02, 0x01, 0x01][..], &ber(0x04, &[b"public"]), &pdu].concat();
        let message = [&[0x30, 0x81, body.len() as u8][..], &body].concat();
        assert!(p.answers(9, &message));
        assert!(p.answers(9, &[&message[..], b"trailing"].concat()));
        assert!(!p.answers(9, &message[..message.len() - 1]));
        // SNMPv1 Trap, wrong outer tag, high tag numbers, indefinite and oversized lengths.
        for bad in [
            &[0xa4, 0x03, 0x02, 0x01, 0x09][..],
            &[0x31, 0x03, 0x02, 0x01, 0x09],
            &[0x3f, 0x03, 0x02, 0x01, 0x09],
            &[0x30, 0x80, 0x02, 0x01, 0x01, 0x00, 0x00],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x02],
            &[0x30, 0x88, 0, 0, 0, 0, 0, 0, 0, 3, 2, 1, 1],
            &[0x30, 0x85, 0, 0, 0, 0, 3, 2, 1, 1],
            &[0x30, 0x81],
            &[0x30],
        ] {
            assert!(!p.answers(9, bad), "{bad:02x?}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let payloads: Vec<Payload> = PORTS.iter().filter_map(|&p| builtin(p)).collect();
        for p in &payloads {
            for _ in 0..5_000 {
                let len = (rng.next() % 128) as usize;
                let garbage = rng.bytes(len);
                p.answers(rng.next(), &garbage);
            }
        }
        // Mutated SNMP responses reach deeper into the parser than random bytes do.
        let snmp = builtin(161).expect("snmp");
        let valid = snmp_response(&[0x12, 0x34]);
        for _ in 0..50_000 {
            let mut r = valid.clone();
            for _ in 0..=rng.next() % 4 {
                let at = (rng.next() % r.len() as u64) as usize;
                r[at] = rng.next() as u8;
            }
            r.truncate((rng.next() % (r.len() as u64 + 1)) as usize);
            snmp.answers(0x1234, &r);
        }
        // An id field past the end of the reply, or longer than a tag, is simply not echoed.
        let odd = Payload { bytes: vec![0; 4], id: Some(2..12), echo: Echo::At { start: usize::MAX, len: 10 } };
        assert!(!odd.answers(TAG, &[0; 64]));
        assert_eq!(written_by(&odd, TAG), [0; 4]);
    }

    #[test]
    fn override_values() {
        assert_eq!(parse_override("53:"), Ok((53, vec![])));
        assert_eq!(parse_override("1:00"), Ok((1, vec![0])));
        assert_eq!(parse_override("65535:DeadBEEF"), Ok((65535, vec![0xde, 0xad, 0xbe, 0xef])));
        assert_eq!(parse_override("7:0a0B"), Ok((7, vec![0x0a, 0x0b])));
        let err = |text: &str| parse_override(text).expect_err(text);
        assert_eq!(err("53:zz"), "--udp-payload 53:zz: not hex");
        assert_eq!(err("53:0x00"), "--udp-payload 53:0x00: not hex");
        assert_eq!(err("53:abc"), "--udp-payload 53:abc: odd number of hex digits");
        assert_eq!(err("53:é0"), "--udp-payload 53:é0: not hex");
        assert_eq!(err("0:00"), "--udp-payload 0:00: port must be 1-65535");
        assert_eq!(err("70000:00"), "--udp-payload 70000:00: port must be 1-65535");
        assert_eq!(err("99999999999999999999999:00"), "--udp-payload 99999999999999999999999:00: port must be 1-65535");
        assert_eq!(err("5300"), "--udp-payload 5300: expected PORT:HEX");
        assert_eq!(err(":00"), "--udp-payload :00: port is not a number");
        assert_eq!(err("+53:00"), "--udp-payload +53:00: port is not a number");
        assert_eq!(err("dns:00"), "--udp-payload dns:00: port is not a number");
    }
}
