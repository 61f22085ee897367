//! nmap's XML format (`-oX`), valid against nmap's DTD so that nmap's own
//! tools (ndiff, XSL reports) read it. The DTD fixes `scanner="nmap"`: it
//! names the format here, and `version` says which program wrote it.

use super::hosts::HostTable;
use super::time::rfc3339_us;
use super::{ResultWriter, RunEnd, RunInfo, done_summary};
use crate::result::ScanResult;
use std::io::{self, Write};

pub struct XmlWriter<W: Write> {
    out: W,
    hosts: HostTable,
    info: RunInfo,
    started: bool,
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
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' && c != '\r' => o.push_str(&format!("&#x{:x};", c as u32)),
            c => o.push(c),
        }
    }
    o
}

impl<W: Write> XmlWriter<W> {
    pub fn new(out: W, info: RunInfo) -> Self {
        XmlWriter { out, hosts: HostTable::default(), info, started: false }
    }

    fn preamble(&mut self) -> io::Result<()> {
        if self.started {
            return Ok(());
        }
        self.started = true;
        let i = &self.info;
        writeln!(self.out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
        writeln!(self.out, "<!DOCTYPE nmaprun>")?;
        writeln!(
            self.out,
            r#"<nmaprun scanner="nmap" args="{}" start="{}" startstr="{}" version="prtip-{}" xmloutputversion="1.05">"#,
            escape(&i.command_line),
            i.start_us / 1_000_000,
            rfc3339_us(i.start_us),
            env!("CARGO_PKG_VERSION")
        )?;
        writeln!(
            self.out,
            r#"<scaninfo type="syn" protocol="tcp" numservices="{}" services="{}"/>"#,
            i.port_count,
            escape(&i.ports)
        )?;
        writeln!(self.out, r#"<verbose level="0"/>"#)?;
        writeln!(self.out, r#"<debugging level="0"/>"#)
    }
}

impl<W: Write> ResultWriter for XmlWriter<W> {
    fn write(&mut self, r: &ScanResult) -> io::Result<()> {
        self.preamble()?;
        self.hosts.add(r);
        Ok(())
    }

    fn finish(&mut self, end: &RunEnd) -> io::Result<()> {
        self.preamble()?;
        let (start, stop) = (self.info.start_us / 1_000_000, end.end_us / 1_000_000);
        for host in self.hosts.views() {
            // The host's status is the first reply it sent; hosts that never
            // answered were scanned as if up, as nmap -Pn reports them.
            let (reason, ttl) =
                host.shown.iter().find_map(|r| r.ttl.map(|t| (r.reason.as_str(), t))).unwrap_or(("user-set", 0));
            writeln!(self.out, r#"<host starttime="{start}" endtime="{stop}">"#)?;
            writeln!(self.out, r#"<status state="up" reason="{reason}" reason_ttl="{ttl}"/>"#)?;
            writeln!(self.out, r#"<address addr="{}" addrtype="ipv4"/>"#, host.ip)?;
            writeln!(self.out, "<ports>")?;
            for (state, count, reason) in &host.hidden {
                writeln!(self.out, r#"<extraports state="{}" count="{count}">"#, state.as_str())?;
                writeln!(self.out, r#"<extrareasons reason="{reason}" count="{count}" proto="tcp"/>"#)?;
                writeln!(self.out, "</extraports>")?;
            }
            for r in &host.shown {
                writeln!(
                    self.out,
                    r#"<port protocol="tcp" portid="{}"><state state="{}" reason="{}" reason_ttl="{}"/></port>"#,
                    r.port,
                    r.state.as_str(),
                    r.reason.as_str(),
                    r.ttl.unwrap_or(0)
                )?;
            }
            writeln!(self.out, "</ports>")?;
            writeln!(self.out, "</host>")?;
        }
        let elapsed = end.end_us.saturating_sub(self.info.start_us) as f64 / 1e6;
        let up = self.hosts.up();
        let summary = done_summary(&self.info, end, up);
        let exit = if end.interrupted { r#"exit="error" errormsg="interrupted""# } else { r#"exit="success""# };
        writeln!(self.out, "<runstats>")?;
        writeln!(
            self.out,
            r#"<finished time="{stop}" timestr="{}" elapsed="{elapsed:.2}" summary="{}" {exit}/>"#,
            rfc3339_us(end.end_us),
            escape(&summary)
        )?;
        writeln!(
            self.out,
            r#"<hosts up="{up}" down="{}" total="{}"/>"#,
            self.info.hosts_total.saturating_sub(up as u64),
            self.info.hosts_total
        )?;
        writeln!(self.out, "</runstats>")?;
        writeln!(self.out, "</nmaprun>")?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_attribute_text() {
        assert_eq!(escape(r#"a&b<c>"d'e"#), "a&amp;b&lt;c&gt;&quot;d&apos;e");
        assert_eq!(escape("x\u{1}y"), "x&#x1;y");
    }
}
