//! `--top-ports N`: the N ports most often found open, for TCP or UDP.
//!
//! Like naabu, prtip reads nmap's frequency table at run time when nmap is installed, and never ships it: the table is
//! under nmap's licence, not ours. Without nmap, prtip falls back to lists the project compiled from published
//! Internet-wide measurements, named above each list.

use std::collections::HashSet;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// Where a top-ports list came from: said in -v output and the docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    NmapServices(PathBuf),
    BuiltIn,
}

/// The path nmap installs its table at on Debian.
pub const NMAP_SERVICES: &str = "/usr/share/nmap/nmap-services";

/// The `n` most frequent ports of `protocol` in the text of an nmap-services file:
/// lines `name<TAB>port/proto<TAB>frequency[<TAB># comment]`, comments starting with '#',
/// blank lines; lines that do not parse are skipped. Sorted by frequency, highest first,
/// ties by port number ascending; ports with frequency 0 are never included. Returns fewer
/// than n if the file has fewer.
pub fn from_nmap_services(text: &str, protocol: Protocol, n: usize) -> Vec<u16> {
    let mut entries: Vec<(f64, u16)> =
        text.lines().filter_map(|line| parse_service_line(line, protocol)).filter(|&(freq, _)| freq > 0.0).collect();
    entries.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    // nmap lists each port/proto once, but an edited copy may not: a port scanned twice would waste a slot of the N.
    let mut seen = HashSet::new();
    entries.into_iter().map(|(_, port)| port).filter(|&port| seen.insert(port)).take(n).collect()
}

fn parse_service_line(line: &str, protocol: Protocol) -> Option<(f64, u16)> {
    let (_name, port, proto, freq) = crate::service_names::entry(line)?;
    let freq: f64 = freq?.parse().ok()?;
    if proto != protocol.name() || !freq.is_finite() {
        return None;
    }
    // Port 0 cannot be scanned, so a line naming it is as useless as a malformed one.
    (port != 0).then_some((freq, port))
}

/// The first `n` of the built-in list for `protocol`, most common first; Err(len) if n exceeds the
/// built-in list's length (the caller says: "the built-in list has only {len} ports; install nmap for
/// --top-ports beyond that").
pub fn builtin(protocol: Protocol, n: usize) -> Result<Vec<u16>, usize> {
    let list = match protocol {
        Protocol::Tcp => BUILTIN_TCP,
        Protocol::Udp => BUILTIN_UDP,
    };
    list.get(..n).map(<[u16]>::to_vec).ok_or(list.len())
}

/// Reads NMAP_SERVICES if present (via `std::fs::read_to_string`), else the built-in list.
/// Err: a one-line message (n = 0, or n beyond what the chosen source has).
pub fn top_ports(protocol: Protocol, n: usize) -> Result<(Vec<u16>, Source), String> {
    top_ports_from(Path::new(NMAP_SERVICES), protocol, n)
}

/// As [`top_ports`], reading the nmap-services file at `path`; a missing file means the built-in list.
pub fn top_ports_from(path: &Path, protocol: Protocol, n: usize) -> Result<(Vec<u16>, Source), String> {
    if n == 0 {
        return Err("--top-ports needs at least 1 port".into());
    }
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let ports = from_nmap_services(&text, protocol, n);
            if ports.len() < n {
                return Err(format!(
                    "'{}' lists only {} {} ports with a frequency; --top-ports {n} asks for more",
                    path.display(),
                    ports.len(),
                    protocol.name()
                ));
            }
            Ok((ports, Source::NmapServices(path.to_path_buf())))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => match builtin(protocol, n) {
            Ok(ports) => Ok((ports, Source::BuiltIn)),
            Err(len) => {
                Err(format!("the built-in list has only {len} ports; install nmap for --top-ports beyond that"))
            }
        },
        // An installed but unreadable table is an nmap problem to fix: falling back would scan other ports than the
        // user expects from their nmap.
        Err(e) => Err(format!("cannot read nmap's port frequencies '{}': {e}", path.display())),
    }
}

/// TCP ports by how many IPv4 hosts answer on them, compiled from: Rapid7 Project Sonar's "National Exposure Index"
/// reports of 2016-2018 (<https://www.rapid7.com/info/national-exposure-index/>) and its "National / Industry / Cloud
/// Exposure Report (NICER) 2020" (<https://www.rapid7.com/research/report/nicer-2020/>); Rapid7's "Happy HaXmas:
/// Year-End Internet Scanning Observations" (2019) for the HTTP, HTTPS and TR-069 ports
/// (<https://www.rapid7.com/blog/post/2019/01/04/happy-haxmas-year-end-internet-scanning-observations/>); Shodan's
/// "Trends in Internet Exposure" (<https://blog.shodan.io/trends-in-internet-exposure/>); and Izhikevich, Teixeira and
/// Durumeric, "LZR: Identifying Unexpected Internet Services", USENIX Security 2021 (<https://scans.io/study/lzr>).
///
/// Ordering: by the host counts these sources publish; where they disagree, the more recent count wins. From about
/// the 40th port on, the sources publish counts for only some ports, so those follow in families (web alternatives,
/// management, industrial, cloud, ...) rather than by a measured rank.
const BUILTIN_TCP: &[u16] = &[
    80,    // http
    443,   // https
    7547,  // cwmp (TR-069)
    22,    // ssh
    8080,  // http-alt
    21,    // ftp
    23,    // telnet
    25,    // smtp
    8443,  // https-alt
    3389,  // ms-wbt-server (RDP)
    53,    // domain
    110,   // pop3
    143,   // imap
    993,   // imaps
    995,   // pop3s
    587,   // submission
    465,   // submissions
    3306,  // mysql
    445,   // microsoft-ds (SMB)
    1723,  // pptp
    5060,  // sip
    8000,  // http-alt
    8081,  // http-alt
    2000,  // cisco-sccp, MikroTik bandwidth test
    4567,  // TR-069 alternative
    1433,  // ms-sql-s
    5900,  // vnc
    8888,  // http-alt
    135,   // msrpc
    139,   // netbios-ssn
    111,   // sunrpc
    9100,  // jetdirect
    631,   // ipp
    515,   // printer (lpd)
    554,   // rtsp
    5432,  // postgresql
    1521,  // oracle
    6379,  // redis
    27017, // mongodb
    11211, // memcached
    9200,  // elasticsearch
    5555,  // TR-069 alternative, adb
    2323,  // telnet alternative
    8291,  // MikroTik winbox
    8728,  // MikroTik api
    5000,  // upnp, http-alt
    49152, // upnp
    1900,  // upnp
    81,    // http-alt
    8008,  // http-alt
    8088,  // http-alt
    8089,  // http-alt
    8880,  // http-alt
    9000,  // http-alt
    10000, // webmin
    5001,  // https-alt
    3000,  // http-alt
    2082,  // cpanel
    2083,  // cpanel-ssl
    2086,  // whm
    2087,  // whm-ssl
    2096,  // cpanel webmail-ssl
    8181,  // http-alt
    9090,  // http-alt
    4443,  // https-alt
    10443, // https-alt
    9443,  // https-alt
    8001,  // http-alt
    7001,  // weblogic
    5985,  // wsman (WinRM)
    5986,  // wsmans
    389,   // ldap
    636,   // ldaps
    119,   // nntp
    179,   // bgp
    102,   // iso-tsap (Siemens S7)
    502,   // modbus
    20000, // dnp3
    44818, // EtherNet/IP
    1883,  // mqtt
    8883,  // secure-mqtt
    5672,  // amqp
    6443,  // kubernetes api
    2375,  // docker
    2376,  // docker-s
    10250, // kubelet
    9092,  // kafka
    5984,  // couchdb
    8086,  // influxdb
    3128,  // squid-http
    1080,  // socks
    6667,  // irc
    873,   // rsync
    2049,  // nfs
    990,   // ftps
    992,   // telnets
    37777, // Dahua DVR
    34567, // DVR (Xiongmai)
    5357,  // wsdapi
    3260,  // iscsi
];

/// UDP ports by how many IPv4 hosts answer a protocol probe on them, compiled from: Rossow, "Amplification Hell:
/// Revisiting Network Protocols for DDoS Abuse", NDSS 2014, which counted the amplifiers of each UDP protocol; the
/// Shadowserver Foundation's daily open-service scans (<https://www.shadowserver.org/what-we-do/network-reporting/>)
/// and CyberGreen's risk indicators (<https://stats.cybergreen.net/risk/>); Rapid7 Project Sonar's UDP
/// studies (<https://github.com/rapid7/sonar/wiki/UDP>) and the amplification section of its 2018 National Exposure
/// Index (<https://www.rapid7.com/info/national-exposure-index/>).
///
/// Ordering: DNS, SNMP, NTP, SSDP and NetBIOS first, the protocols counted in millions of responders, in the order
/// of their largest published counts; the next ones follow Shadowserver's and Sonar's counts, the more recent where
/// they disagree. Ports the sources only name (a probe without a published count) come last, grouped by family.
const BUILTIN_UDP: &[u16] = &[
    53,    // domain
    161,   // snmp
    123,   // ntp
    1900,  // ssdp
    137,   // netbios-ns
    500,   // isakmp
    5060,  // sip
    111,   // sunrpc (portmap)
    5353,  // mdns
    4500,  // ipsec-nat-t
    1434,  // ms-sql-m
    69,    // tftp
    623,   // asf-rmcp (IPMI)
    3702,  // ws-discovery
    10001, // Ubiquiti discovery
    5683,  // coap
    11211, // memcached
    389,   // cldap
    19,    // chargen
    17,    // qotd
    1701,  // l2tp
    1194,  // openvpn
    3478,  // stun
    5351,  // nat-pmp
    520,   // rip
    177,   // xdmcp
    427,   // svrloc (SLP)
    3283,  // Apple Remote Desktop
    47808, // bacnet
    37810, // DVR discovery
    67,    // dhcps
    138,   // netbios-dgm
    162,   // snmptrap
    514,   // syslog
    1812,  // radius
    2049,  // nfs
    6881,  // BitTorrent DHT
    27015, // Steam / Source game servers
    27960, // Quake 3 servers
    7,     // echo
];

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
# Fields in this file are: Service name, portnum/protocol, open-frequency, optional comments
#
tcpmux\t1/tcp\t0.001995\t# TCP Port Service Multiplexer [rfc-1078]
http\t80/tcp\t0.484143\t# World Wide Web HTTP
https\t443/tcp\t0.208669\t# secure http (SSL)
telnet\t23/tcp\t0.221265
ssh\t22/tcp\t0.182286\t# Secure Shell Login

ftp\t21/tcp\t0.197667
tie-high\t9999/tcp\t0.100000
tie-low\t7777/tcp\t0.100000
unused\t5555/tcp\t0.000000
spaced   8888/tcp   0.050000
no-frequency\t1234/tcp
bad-port\tabc/tcp\t0.9
too-big\t70000/tcp\t0.9
port-zero\t0/tcp\t0.9
no-proto\t4444\t0.9
bad-frequency\t4445/tcp\thigh
nan\t4446/tcp\tNaN
negative\t4447/tcp\t-0.5
domain\t53/udp\t0.213496
snmp\t161/udp\t0.433467
ntp\t123/udp\t0.330879
idle\t9/udp\t0
sctp-only\t80/sctp\t0.9
";

    fn temp_file(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("prtip-top-ports-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn parser_sorts_by_frequency_then_port() {
        assert_eq!(from_nmap_services(SAMPLE, Protocol::Tcp, 7), [80, 23, 443, 21, 22, 7777, 9999]);
        assert_eq!(from_nmap_services(SAMPLE, Protocol::Udp, 3), [161, 123, 53]);
    }

    #[test]
    fn parser_skips_comments_zero_frequency_and_malformed_lines() {
        let all = from_nmap_services(SAMPLE, Protocol::Tcp, usize::MAX);
        assert_eq!(all, [80, 23, 443, 21, 22, 7777, 9999, 8888, 1]);
    }

    #[test]
    fn parser_keeps_protocols_apart() {
        assert_eq!(from_nmap_services(SAMPLE, Protocol::Udp, 100), [161, 123, 53]);
        assert!(!from_nmap_services(SAMPLE, Protocol::Tcp, 100).contains(&161));
    }

    #[test]
    fn parser_returns_fewer_when_the_file_has_fewer() {
        assert_eq!(from_nmap_services(SAMPLE, Protocol::Udp, 10).len(), 3);
        assert!(from_nmap_services("", Protocol::Tcp, 10).is_empty());
        assert!(from_nmap_services(SAMPLE, Protocol::Tcp, 0).is_empty());
    }

    #[test]
    fn parser_lists_a_repeated_port_once_at_its_highest_frequency() {
        let text = "a\t80/tcp\t0.1\nb\t443/tcp\t0.2\nc\t80/tcp\t0.3\n";
        assert_eq!(from_nmap_services(text, Protocol::Tcp, 10), [80, 443]);
    }

    #[test]
    fn parser_reads_the_installed_nmap_table() {
        // About nmap's own file, so it can only run where nmap is installed.
        let Ok(text) = std::fs::read_to_string(NMAP_SERVICES) else { return };
        for protocol in [Protocol::Tcp, Protocol::Udp] {
            let ports = from_nmap_services(&text, protocol, 100);
            assert_eq!(ports.len(), 100, "{protocol:?}");
            assert_eq!(ports.iter().collect::<HashSet<_>>().len(), 100, "{protocol:?}");
        }
        let top10 = from_nmap_services(&text, Protocol::Tcp, 10);
        assert!(top10.contains(&80) && top10.contains(&443), "{top10:?}");
    }

    #[test]
    fn builtin_lists_are_distinct_valid_ports_of_the_intended_sizes() {
        for (list, sizes) in [(BUILTIN_TCP, 90..=110), (BUILTIN_UDP, 30..=50)] {
            assert!(sizes.contains(&list.len()), "{}", list.len());
            assert!(!list.contains(&0));
            assert_eq!(list.iter().collect::<HashSet<_>>().len(), list.len());
        }
    }

    #[test]
    fn builtin_starts_with_the_most_common_ports() {
        let tcp = builtin(Protocol::Tcp, 5).unwrap();
        assert!(tcp.contains(&80) && tcp.contains(&443), "{tcp:?}");
        assert!(builtin(Protocol::Udp, 3).unwrap().contains(&53));
        assert_eq!(builtin(Protocol::Tcp, 1).unwrap(), [80]);
    }

    #[test]
    fn builtin_past_the_end_gives_the_length() {
        let len = BUILTIN_TCP.len();
        assert_eq!(builtin(Protocol::Tcp, len).unwrap(), BUILTIN_TCP);
        assert_eq!(builtin(Protocol::Tcp, len + 1), Err(len));
        assert_eq!(builtin(Protocol::Udp, 65535), Err(BUILTIN_UDP.len()));
    }

    #[test]
    fn missing_file_falls_back_to_builtin() {
        let path = std::env::temp_dir().join(format!("prtip-top-ports-{}-absent", std::process::id()));
        let (ports, source) = top_ports_from(&path, Protocol::Udp, 3).unwrap();
        assert_eq!(source, Source::BuiltIn);
        assert_eq!(ports, BUILTIN_UDP[..3]);
        let err = top_ports_from(&path, Protocol::Tcp, BUILTIN_TCP.len() + 1).unwrap_err();
        assert_eq!(
            err,
            format!("the built-in list has only {} ports; install nmap for --top-ports beyond that", BUILTIN_TCP.len())
        );
    }

    #[test]
    fn present_file_is_the_source() {
        let path = temp_file("services", SAMPLE);
        let result = top_ports_from(&path, Protocol::Tcp, 3);
        let too_many = top_ports_from(&path, Protocol::Udp, 4);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(result, Ok((vec![80, 23, 443], Source::NmapServices(path.clone()))));
        let err = too_many.unwrap_err();
        assert!(err.contains("only 3 udp ports") && err.contains(&path.display().to_string()), "{err}");
    }

    #[test]
    fn unreadable_file_is_an_error_not_a_fallback() {
        // A directory exists but cannot be read as text, like a table with broken permissions.
        let err = top_ports_from(&std::env::temp_dir(), Protocol::Tcp, 10).unwrap_err();
        assert!(err.starts_with("cannot read nmap's port frequencies"), "{err}");
    }

    #[test]
    fn zero_ports_is_an_error() {
        assert!(top_ports(Protocol::Tcp, 0).is_err());
        let path = temp_file("zero", SAMPLE);
        let result = top_ports_from(&path, Protocol::Tcp, 0);
        std::fs::remove_file(&path).unwrap();
        assert!(result.is_err());
    }

    #[test]
    fn top_ports_gives_n_ports_from_whichever_source_is_here() {
        let (ports, source) = top_ports(Protocol::Tcp, 20).unwrap();
        assert_eq!(ports.len(), 20);
        let expected = if Path::new(NMAP_SERVICES).exists() {
            Source::NmapServices(PathBuf::from(NMAP_SERVICES))
        } else {
            Source::BuiltIn
        };
        assert_eq!(source, expected);
    }
}
