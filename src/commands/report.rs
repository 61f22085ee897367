//! `prtip report`: the round-trip histograms stored with scans, as tables,
//! side-by-side comparisons, SVG plots and the slowest hosts or networks.

use crate::latency::{self, GroupBy, Series};
use crate::plot::{PlotSeries, percentile_svg};
use crate::store::stored::{self, ScanRef};
use crate::store::{StoreError, safe_open};
use clap::Args;
use hdrhistogram::Histogram;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// `prtip report`: round-trip time reports of scans stored with --with-db.
#[derive(Debug, Args)]
#[command(after_help = "One scan: percentiles per state, then the percentile distribution (.hgrm) of --series.\n\
                  Several scans: their percentiles side by side.")]
pub struct ReportArgs {
    /// The database file [default: ./prtip.db]
    #[arg(long, value_name = "PATH")]
    database: Option<PathBuf>,

    /// Read a PostgreSQL's scans instead (also from PRTIP_POSTGRES)
    #[arg(long, value_name = "URL", env = "PRTIP_POSTGRES", hide_env_values = true)]
    postgres: Option<String>,

    /// The scans to report, by id, or fleet:ID (fleet:NAME) for a fleet's
    /// shards as one scan; two or more are compared
    #[arg(required = true, value_name = "SCAN_ID")]
    scans: Vec<ScanRef>,

    /// Which replies: all, open (SYN-ACKs), closed (RSTs) or filtered (ICMP errors)
    #[arg(long, value_enum, default_value = "all")]
    series: Series,

    /// Also draw the percentile plot as SVG: one line per state for one scan, one per scan for several
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,

    /// List the slowest hosts or networks (/24; /64 for IPv6) by median round trip
    #[arg(long, value_enum, value_name = "GROUP")]
    by: Option<GroupBy>,

    /// How many of the slowest to list with --by
    #[arg(long, value_name = "N", default_value_t = 10, requires = "by",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    top: usize,
}

#[derive(Debug, thiserror::Error)]
enum ReportError {
    #[error("{0} has no round-trip times stored (it is still running, or no reply carried one)")]
    NoLatency(ScanRef),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("plot {}: {source}", path.display())]
    Plot { path: PathBuf, source: io::Error },
    #[error("writing: {0}")]
    Output(#[from] io::Error),
}

/// Runs `prtip report`.
pub fn main(args: ReportArgs) -> ExitCode {
    super::exit_status(
        run(args),
        |e| matches!(e, ReportError::Store(e) if e.names_the_wrong_database()),
        |e| matches!(e, ReportError::Output(e) if e.kind() == io::ErrorKind::BrokenPipe),
    )
}

struct Scan {
    id: ScanRef,
    histograms: Vec<(Series, Histogram<u64>)>,
}

impl Scan {
    fn get(&self, series: Series) -> Option<&Histogram<u64>> {
        self.histograms.iter().find(|(s, _)| *s == series).map(|(_, h)| h)
    }
}

fn run(cli: ReportArgs) -> Result<(), ReportError> {
    let postgres = crate::cli::postgres_to_read(&cli.postgres, cli.database.as_deref())?;
    let db = stored::open(cli.database.as_deref(), postgres.as_deref())?;
    let mut scans = Vec::new();
    for id in &cli.scans {
        db.scan(id)?.ok_or_else(|| id.not_found())?;
        let histograms = db.latency(id)?;
        if histograms.is_empty() {
            return Err(ReportError::NoLatency(id.clone()));
        }
        scans.push(Scan { id: id.clone(), histograms });
    }
    // A plot that cannot be written fails before the report is printed; one
    // there already is replaced only once the report is.
    let plot_file = match &cli.plot {
        Some(path) => Some(
            safe_open::open_now(safe_open::writing().create(true), path)
                .map_err(|source| ReportError::Plot { path: path.clone(), source })?,
        ),
        None => None,
    };
    let mut out = BufWriter::new(io::stdout().lock());
    if let [scan] = &scans[..] {
        writeln!(out, "{}: round trip (us)", scan.id)?;
        writeln!(
            out,
            "{:<9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "series", "count", "p50", "p90", "p99", "p99.9", "max"
        )?;
        for (series, h) in &scan.histograms {
            let q = |p| h.value_at_quantile(p);
            writeln!(
                out,
                "{:<9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                series.name(),
                h.len(),
                q(0.5),
                q(0.9),
                q(0.99),
                q(0.999),
                h.max()
            )?;
        }
        writeln!(out)?;
        match scan.get(cli.series) {
            Some(h) => write!(out, "{}", latency::percentile_distribution(h))?,
            None => writeln!(out, "no {} replies carried a round trip", cli.series.name())?,
        }
    } else {
        compare(&scans, cli.series, &mut out)?;
    }
    if let Some(by) = cli.by {
        for scan in &scans {
            let rows = db.results(&scan.id, false)?;
            let samples = rows
                .iter()
                .filter(|r| cli.series == Series::All || Series::of(r.state) == cli.series)
                .filter_map(|r| Some((r.ip, r.rtt_us?)));
            let groups = latency::slowest(samples, by, cli.top);
            let noun = match by {
                GroupBy::Host => "hosts",
                GroupBy::Net24 => "networks (/24, or /64 for IPv6)",
            };
            writeln!(out, "\n{}: the slowest {} {noun} by median round trip (us)", scan.id, groups.len())?;
            // Wide enough for an IPv4 /24 and for any IPv6 group.
            let w = groups.iter().map(|g| g.group.len()).max().unwrap_or(0).max(18);
            writeln!(out, "{:<w$} {:>9} {:>9} {:>9} {:>9}", "target", "replies", "p50", "p90", "max")?;
            for g in groups {
                writeln!(out, "{:<w$} {:>9} {:>9} {:>9} {:>9}", g.group, g.count, g.p50, g.p90, g.max)?;
            }
        }
    }
    out.flush()?;
    if let (Some(path), Some(mut file)) = (&cli.plot, plot_file) {
        let svg = plot(&scans, cli.series);
        file.set_len(0)
            .and_then(|()| file.write_all(svg.as_bytes()))
            .map_err(|source| ReportError::Plot { path: path.clone(), source })?;
    }
    Ok(())
}

fn compare(scans: &[Scan], series: Series, out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "round trip (us) of {} replies", series.name())?;
    write!(out, "{:<8}", "")?;
    for scan in scans {
        write!(out, " {:>12}", scan.id.to_string())?;
    }
    writeln!(out)?;
    type Row = (&'static str, fn(&Histogram<u64>) -> u64);
    let rows: [Row; 7] = [
        ("count", |h| h.len()),
        ("p50", |h| h.value_at_quantile(0.5)),
        ("p90", |h| h.value_at_quantile(0.9)),
        ("p99", |h| h.value_at_quantile(0.99)),
        ("p99.9", |h| h.value_at_quantile(0.999)),
        ("p99.99", |h| h.value_at_quantile(0.9999)),
        ("max", |h| h.max()),
    ];
    for (name, value) in rows {
        write!(out, "{name:<8}")?;
        for scan in scans {
            match scan.get(series) {
                Some(h) => write!(out, " {:>12}", value(h))?,
                None => write!(out, " {:>12}", "-")?,
            }
        }
        writeln!(out)?;
    }
    Ok(())
}

fn plot(scans: &[Scan], series: Series) -> String {
    if let [scan] = scans {
        let lines: Vec<PlotSeries> = scan
            .histograms
            .iter()
            .filter(|(s, _)| *s != Series::All)
            .map(|(s, h)| PlotSeries { label: s.name().into(), histogram: h })
            .collect();
        percentile_svg(&format!("prtip {}: round trip by state", scan.id), &lines)
    } else {
        let lines: Vec<PlotSeries> = scans
            .iter()
            .filter_map(|scan| Some(PlotSeries { label: scan.id.to_string(), histogram: scan.get(series)? }))
            .collect();
        percentile_svg(&format!("prtip: round trip of {} replies", series.name()), &lines)
    }
}
