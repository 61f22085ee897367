//! nmap's XML format (`-oX`), valid against nmap's DTD so that nmap's own
//! tools (ndiff, XSL reports) read it. The DTD fixes `scanner="nmap"`: it
//! names the format here, and `version` says which program wrote it.

use super::hosts::{HostReport, HostTable};
use super::scripts;
use super::time::rfc3339_us;
use super::{RunEnd, RunInfo, done_summary};
use crate::open_hosts::FLAG;
use std::io::{self, Write};

pub struct Xml {
    pub info: RunInfo,
}

/// Escapes text for an XML attribute value.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            // Kept through attribute-value normalisation, which would make them spaces.
            '\t' => o.push_str("&#x9;"),
            '\n' => o.push_str("&#xA;"),
            '\r' => o.push_str("&#xD;"),
            // Characters XML 1.0 forbids even as references: the file must stay valid.
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => o.push(char::REPLACEMENT_CHARACTER),
            c => o.push(c),
        }
    }
    o
}

impl HostReport for Xml {
    fn preamble(&self, out: &mut dyn Write) -> io::Result<()> {
        let i = &self.info;
        writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
        writeln!(out, "<!DOCTYPE nmaprun>")?;
        writeln!(
            out,
            r#"<nmaprun scanner="nmap" args="{}" start="{}" startstr="{}" version="prtip-{}" xmloutputversion="1.05">"#,
            escape(&i.command_line),
            i.start_us / 1_000_000,
            rfc3339_us(i.start_us),
            env!("CARGO_PKG_VERSION")
        )?;
        // A ping scan has no ports, and nmap writes no scaninfo for one.
        if i.scan_type.has_ports() {
            writeln!(
                out,
                r#"<scaninfo type="{}" protocol="{}" numservices="{}" services="{}"/>"#,
                i.scan_type.as_str(),
                i.scan_type.protocol(),
                i.port_count,
                escape(&i.ports)
            )?;
        }
        writeln!(out, r#"<verbose level="0"/>"#)?;
        writeln!(out, r#"<debugging level="0"/>"#)
    }

    fn body(&self, out: &mut dyn Write, hosts: &mut HostTable, end: &RunEnd) -> io::Result<()> {
        let (start, stop) = (self.info.start_us / 1_000_000, end.end_us / 1_000_000);
        let proto = self.info.scan_type.protocol();
        for host in hosts.views() {
            if !self.info.scan_type.has_ports() {
                // An echo scan's one result is the host's status: up, or down (silent or unreachable).
                for (r, _) in &host.shown {
                    let state = if r.state.is_found() { "up" } else { "down" };
                    writeln!(out, r#"<host starttime="{start}" endtime="{stop}">"#)?;
                    writeln!(
                        out,
                        r#"<status state="{state}" reason="{}" reason_ttl="{}"/>"#,
                        r.reason.as_str(),
                        r.ttl.unwrap_or(0)
                    )?;
                    let family = if host.ip.is_ipv4() { "ipv4" } else { "ipv6" };
                    writeln!(out, r#"<address addr="{}" addrtype="{family}"/>"#, host.ip)?;
                    if let Some(us) = r.rtt_us {
                        writeln!(out, r#"<times srtt="{us}" rttvar="0" to="{}"/>"#, us.max(100_000))?;
                    }
                    writeln!(out, "</host>")?;
                }
                continue;
            }
            // The host's status is the first reply it sent; hosts that never
            // answered were scanned as if up, as nmap -Pn reports them.
            let (reason, ttl) =
                host.shown.iter().find_map(|(r, _)| r.ttl.map(|t| (r.reason.as_str(), t))).unwrap_or(("user-set", 0));
            writeln!(out, r#"<host starttime="{start}" endtime="{stop}">"#)?;
            writeln!(out, r#"<status state="up" reason="{reason}" reason_ttl="{ttl}"/>"#)?;
            let family = if host.ip.is_ipv4() { "ipv4" } else { "ipv6" };
            writeln!(out, r#"<address addr="{}" addrtype="{family}"/>"#, host.ip)?;
            writeln!(out, "<ports>")?;
            for (state, count, reason) in &host.hidden {
                writeln!(out, r#"<extraports state="{}" count="{count}">"#, state.as_str())?;
                writeln!(out, r#"<extrareasons reason="{reason}" count="{count}" proto="{proto}"/>"#)?;
                writeln!(out, "</extraports>")?;
            }
            for (r, s) in &host.shown {
                // As nmap: no service element for a port its table does not name.
                let identified = s.and_then(|s| s.name.as_deref().map(|n| (n, s)));
                let mut service = match (identified, self.info.services.name(proto, r.port)) {
                    (Some((name, s)), _) => {
                        let product =
                            s.product.as_ref().map_or(String::new(), |p| format!(r#" product="{}""#, escape(p)));
                        let tunnel = if s.tls.is_some() && name != "ssl" { r#" tunnel="ssl""# } else { "" };
                        format!(r#"<service name="{}"{product}{tunnel} method="probed" conf="10"/>"#, escape(name))
                    }
                    (None, Some(name)) => format!(r#"<service name="{name}" method="table" conf="3"/>"#),
                    (None, None) => String::new(),
                };
                for (id, output) in s.map(scripts).unwrap_or_default() {
                    service.push_str(&format!(r#"<script id="{id}" output="{}"/>"#, escape(&output)));
                }
                writeln!(
                    out,
                    r#"<port protocol="{proto}" portid="{}"><state state="{}" reason="{}" reason_ttl="{}"/>{service}</port>"#,
                    r.port,
                    r.state.as_str(),
                    r.reason.as_str(),
                    r.ttl.unwrap_or(0),
                )?;
            }
            writeln!(out, "</ports>")?;
            if let Some(flag) = end.flag_of(host.ip) {
                writeln!(
                    out,
                    r#"<hostscript><script id="prtip-{FLAG}" output="{}"/></hostscript>"#,
                    escape(&flag.describe())
                )?;
            }
            writeln!(out, "</host>")?;
        }
        let elapsed = end.end_us.saturating_sub(self.info.start_us) as f64 / 1e6;
        let up = hosts.up();
        let summary = done_summary(&self.info, end, up);
        let exit = if end.interrupted { r#"exit="error" errormsg="interrupted""# } else { r#"exit="success""# };
        writeln!(out, "<runstats>")?;
        writeln!(
            out,
            r#"<finished time="{stop}" timestr="{}" elapsed="{elapsed:.2}" summary="{}" {exit}/>"#,
            rfc3339_us(end.end_us),
            escape(&summary)
        )?;
        writeln!(
            out,
            r#"<hosts up="{up}" down="{}" total="{}"/>"#,
            self.info.hosts_total.saturating_sub(up as u64),
            self.info.hosts_total
        )?;
        writeln!(out, "</runstats>")?;
        writeln!(out, "</nmaprun>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_attribute_text() {
        assert_eq!(escape(r#"a&b<c>"d'e"#), "a&amp;b&lt;c&gt;&quot;d&apos;e");
        assert_eq!(escape("x\u{1}y\u{1b}z\u{FFFF}"), "x\u{FFFD}y\u{FFFD}z\u{FFFD}");
        assert_eq!(escape("a\tb\nc\rd"), "a&#x9;b&#xA;c&#xD;d");
    }
}
