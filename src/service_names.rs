//! The names of ports, as nmap's `method="table"` gives them: the service
//! registered for a port and protocol, from nmap's own table when nmap is
//! installed (so that an nmap report and prtip's name every port alike),
//! otherwise from the system's `/etc/services` (Debian's `netbase`).
//! prtip ships neither.

use std::collections::HashMap;
use std::path::Path;

/// The system's table of registered services.
pub const ETC_SERVICES: &str = "/etc/services";

/// One line of an nmap-services or `/etc/services` file: the name, port,
/// protocol, and the field after them (nmap's frequency, or the first
/// alias); None for comments, blank lines and lines that do not parse.
/// Tabs are the format, but a hand-edited copy often has spaces: both do.
pub(crate) fn entry(line: &str) -> Option<(&str, u16, &str, Option<&str>)> {
    let mut fields = line.split('#').next().unwrap_or("").split_whitespace();
    let name = fields.next()?;
    let (port, proto) = fields.next()?.split_once('/')?;
    Some((name, port.parse().ok()?, proto, fields.next()))
}

/// Port names per protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceNames {
    names: HashMap<(Proto, u16), Box<str>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Proto {
    Tcp,
    Udp,
}

impl ServiceNames {
    /// The names in the text of an nmap-services or `/etc/services` file:
    /// lines `name port/proto ...`, `#` comments; the first name of a port
    /// and protocol wins, and lines that do not parse are skipped.
    pub fn parse(text: &str) -> ServiceNames {
        let mut names = HashMap::new();
        for (name, port, proto, _) in text.lines().filter_map(entry) {
            let proto = match proto {
                "tcp" => Proto::Tcp,
                "udp" => Proto::Udp,
                _ => continue,
            };
            // A name with a quote or an angle bracket would need escaping in
            // every format; no registered name has one.
            if name.chars().all(|c| c.is_ascii_graphic() && !"\"'<>&,/\\".contains(c)) {
                names.entry((proto, port)).or_insert_with(|| name.into());
            }
        }
        ServiceNames { names }
    }

    /// nmap's table where nmap is installed, else `/etc/services`, else none.
    pub fn system() -> ServiceNames {
        [crate::target::top_ports::NMAP_SERVICES, ETC_SERVICES]
            .iter()
            .find_map(|p| std::fs::read_to_string(Path::new(p)).ok())
            .map(|text| ServiceNames::parse(&text))
            .unwrap_or_default()
    }

    /// The service registered for `port` of `protocol` (`tcp` or `udp`).
    pub fn name(&self, protocol: &str, port: u16) -> Option<&str> {
        let proto = match protocol {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            _ => return None,
        };
        self.names.get(&(proto, port)).map(|n| &**n)
    }

    /// As nmap writes a port its table has no name for.
    pub fn name_or_unknown(&self, protocol: &str, port: u16) -> &str {
        self.name(protocol, port).unwrap_or("unknown")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_either_table_format_first_one_winning() {
        let etc = "# comment\nssh\t\t22/tcp\t\t\t\t# SSH Remote Login Protocol\ndomain\t\t53/tcp\ndomain\t\t53/udp\n\
                   http\t\t80/tcp\t\twww\t\t# WorldWideWeb HTTP\nwww-alt\t80/tcp\nbad\tx/tcp\nsctp-only\t9/sctp\n";
        let t = ServiceNames::parse(etc);
        assert_eq!(t.name("tcp", 22), Some("ssh"));
        assert_eq!(t.name("udp", 53), Some("domain"));
        assert_eq!(t.name("tcp", 80), Some("http"), "the first line of a port wins");
        assert_eq!(t.name("udp", 22), None);
        assert_eq!(t.name("sctp", 9), None);
        assert_eq!(t.name_or_unknown("tcp", 65535), "unknown");
        let nmap = "http-proxy\t8080/tcp\t0.003\t# Common HTTP proxy/second web server port\n";
        assert_eq!(ServiceNames::parse(nmap).name("tcp", 8080), Some("http-proxy"));
        assert_eq!(ServiceNames::parse("a\"b 1/tcp\n<x> 2/tcp\n").name("tcp", 1), None);
    }
}
