//! Result formats, for standard output and for files.

pub mod csv;
pub mod decimal;
pub mod grepable;
pub mod hosts;
pub mod ndjson;
pub mod text;
pub mod time;
pub mod xml;

use crate::banner::Service;
use crate::open_hosts::FlaggedHost;
use crate::probe::ScanType;
use crate::result::ScanResult;
use hosts::PerHostWriter;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// What a report says about the run besides its results.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    pub command_line: String,
    pub scan_type: ScanType,
    pub start_us: u64,
    /// The port list as given to the scan, e.g. `1-1000` (nmap's `services`).
    pub ports: String,
    pub port_count: u64,
    pub hosts_total: u64,
    /// The names every format gives the ports, read once per run.
    pub services: std::sync::Arc<crate::service_names::ServiceNames>,
    /// Whether open ports were asked what answers there (`--banners`): CSV
    /// has the columns for it then.
    pub banners: bool,
}

/// How the run ended, for report footers.
#[derive(Debug, Clone, Default)]
pub struct RunEnd {
    pub end_us: u64,
    pub interrupted: bool,
    /// Hosts that answered SYN-ACK on most ports probed, or over
    /// `--max-open-per-host`, in address order.
    pub flagged: Vec<FlaggedHost>,
}

impl RunEnd {
    pub fn flag_of(&self, ip: IpAddr) -> Option<&FlaggedHost> {
        self.flagged.binary_search_by_key(&ip, |h| h.ip).ok().map(|i| &self.flagged[i])
    }
}

/// The first line of a text or grepable report file, as nmap writes its own.
pub fn preamble(info: &RunInfo) -> String {
    format!(
        "# prtip {} scan initiated {} as: {}",
        env!("CARGO_PKG_VERSION"),
        time::rfc3339_us(info.start_us),
        info.command_line
    )
}

/// The summary that closes a report: when, how many hosts, how long.
pub fn done_summary(info: &RunInfo, end: &RunEnd, hosts_up: usize) -> String {
    format!(
        "prtip done at {}{} -- {} IP addresses ({hosts_up} hosts up) scanned in {:.2} seconds",
        time::rfc3339_us(end.end_us),
        if end.interrupted { " (interrupted)" } else { "" },
        info.hosts_total,
        end.end_us.saturating_sub(info.start_us) as f64 / 1e6
    )
}

/// What banners saw on a port, as nmap's scripts would report it: (script
/// id, output) pairs, for the text and XML reports.
pub fn scripts(s: &Service) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(h) = &s.http {
        if let Some(title) = &h.title {
            out.push(("http-title", title.clone()));
        }
        if let Some(server) = &h.server {
            out.push(("http-server-header", server.clone()));
        }
        if let Some(location) = &h.location {
            out.push(("http-location", location.clone()));
        }
    } else if !s.banner.is_empty() {
        out.push(("banner", crate::banner::identify::printable(&s.banner, s.banner.len())));
    }
    if let Some(c) = s.tls.as_ref().and_then(|t| t.chain.first()) {
        out.push((
            "ssl-cert",
            format!(
                "Subject: {}; Subject Alternative Name: {}; Issuer: {}; Not valid before: {}; Not valid after: {}; SHA-256: {}",
                c.subject,
                c.san.join(", "),
                c.issuer,
                c.not_before,
                c.not_after,
                c.sha256
            ),
        ));
    }
    out
}

/// The service a report names a port by: what banners identified there
/// (`ssl/http` inside TLS, as nmap writes it), or else the table's name.
pub fn service_name<'a>(service: Option<&'a Service>, table: Option<&'a str>) -> Option<std::borrow::Cow<'a, str>> {
    match service.and_then(|s| s.name.as_deref().map(|n| (n, s.tls.is_some()))) {
        Some((name, true)) if name != "ssl" => Some(format!("ssl/{name}").into()),
        Some((name, _)) => Some(name.into()),
        None => table.map(Into::into),
    }
}

/// A sink for results, fed as they arrive and finished once at the end.
pub trait ResultWriter {
    /// Writes a result, with what answers on its port where banners were asked.
    fn write(&mut self, result: &ScanResult, service: Option<&Service>) -> io::Result<()>;
    /// Writes whatever is held back (per-host reports, footers) and flushes.
    fn finish(&mut self, end: &RunEnd) -> io::Result<()>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// nmap-like text (`-oN`, `-o text`)
    Text,
    /// one JSON object per line (`-oJ`, `-o ndjson`)
    Ndjson,
    /// nmap XML (`-oX`)
    Xml,
    /// nmap grepable (`-oG`)
    Grepable,
    /// CSV with a header (`-oC`)
    Csv,
}

impl Format {
    /// File extensions for `-oA BASE`.
    pub const ALL: [(Format, &'static str); 5] = [
        (Format::Text, "nmap"),
        (Format::Xml, "xml"),
        (Format::Grepable, "gnmap"),
        (Format::Ndjson, "json"),
        (Format::Csv, "csv"),
    ];

    /// The letter of its nmap-style option: `-oN`, `-oJ`, `-oX`, `-oG`, `-oC`.
    pub fn letter(self) -> char {
        match self {
            Format::Text => 'N',
            Format::Ndjson => 'J',
            Format::Xml => 'X',
            Format::Grepable => 'G',
            Format::Csv => 'C',
        }
    }
}

/// A requested output file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    pub format: Format,
    pub path: PathBuf,
}

impl OutputFile {
    pub fn all(base: &Path) -> Vec<OutputFile> {
        Format::ALL
            .iter()
            .map(|(format, ext)| {
                let mut p = base.as_os_str().to_owned();
                p.push(format!(".{ext}"));
                OutputFile { format: *format, path: PathBuf::from(p) }
            })
            .collect()
    }
}

/// The writer for `format`. `header` adds the run's preamble that files carry.
pub fn writer<'a, W: Write + 'a>(format: Format, out: W, info: &RunInfo, header: bool) -> Box<dyn ResultWriter + 'a> {
    match format {
        Format::Text => Box::new(PerHostWriter::new(
            out,
            text::Text {
                scan_type: info.scan_type,
                services: info.services.clone(),
                header: header.then(|| info.clone()),
            },
        )),
        Format::Ndjson => Box::new(ndjson::NdjsonWriter::new(out, info.scan_type, info.services.clone())),
        Format::Xml => Box::new(PerHostWriter::new(out, xml::Xml { info: info.clone() })),
        Format::Grepable => Box::new(PerHostWriter::new(out, grepable::Grepable { info: info.clone() })),
        Format::Csv => Box::new(csv::CsvWriter::new(out, info.scan_type, info.services.clone(), info.banners)),
    }
}
