//! Scans in PostgreSQL as `prtip db` and `prtip report` read them: one
//! scan, or a fleet's shards as one scan (their results and services
//! together, their histograms added, their counts summed). Reading
//! changes nothing in the database.

use super::StoreError;
use super::db::{ScanRow, service_of};
use super::fleet::fleet_id;
use super::sink::postgres::{db_error, refuse_newer, schema_version};
use super::stored::{ScanRef, StoredScans};
use crate::banner::Service;
use crate::latency::{self, Series};
use crate::open_hosts::FlaggedHost;
use crate::output::time::rfc3339_us;
use crate::result::{PortState, Reason, ScanResult};
use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio_postgres::{Client, NoTls, Row};

pub struct PostgresScans {
    runtime: tokio::runtime::Runtime,
    client: Client,
}

/// A scan row's columns, times as microseconds since the epoch.
const SCAN_COLUMNS: &str = "id, (extract(epoch FROM started_at) * 1e6)::bigint, \
    (extract(epoch FROM ended_at) * 1e6)::bigint, command_line, transport, probes_sent, open_count, \
    closed_count, filtered_count, status";

/// A fleet as one scan row: its shards' scans summed; completed once every shard is done.
const FLEET_ROWS: &str = "SELECT f.id, (extract(epoch FROM coalesce(min(sc.started_at), f.created_at)) * 1e6)::bigint, \
    CASE WHEN bool_and(s.status = 'done') THEN (extract(epoch FROM max(sc.ended_at)) * 1e6)::bigint END, \
    f.shards, f.arguments, coalesce(string_agg(DISTINCT sc.transport, ','), ''), \
    coalesce(sum(sc.probes_sent), 0)::bigint, coalesce(sum(sc.open_count), 0)::bigint, \
    coalesce(sum(sc.closed_count), 0)::bigint, coalesce(sum(sc.filtered_count), 0)::bigint, \
    bool_and(s.status = 'done') \
    FROM fleets f JOIN fleet_shards s ON s.fleet_id = f.id LEFT JOIN scans sc ON sc.id = s.scan_id \
    WHERE ($1::bigint IS NULL OR f.id = $1) GROUP BY f.id ORDER BY f.id";

fn time(us: Option<i64>) -> Option<String> {
    us.map(|us| rfc3339_us(us.max(0) as u64))
}

fn scan_row(r: &Row) -> ScanRow {
    ScanRow {
        id: r.get(0),
        started_at: time(r.get(1)).unwrap_or_default(),
        ended_at: time(r.get(2)),
        command_line: r.get(3),
        transport: r.get(4),
        probes_sent: r.get(5),
        open: r.get(6),
        closed: r.get(7),
        filtered: r.get(8),
        status: r.get(9),
    }
}

fn fleet_row(r: &Row) -> ScanRow {
    let (shards, arguments): (i32, Vec<String>) = (r.get(3), r.get(4));
    ScanRow {
        id: r.get(0),
        started_at: time(r.get(1)).unwrap_or_default(),
        ended_at: time(r.get(2)),
        command_line: format!("prtip fleet create --shards {shards} -- {}", arguments.join(" ")),
        transport: r.get(5),
        probes_sent: r.get(6),
        open: r.get(7),
        closed: r.get(8),
        filtered: r.get(9),
        status: if r.get(10) { "completed" } else { "running" }.to_string(),
    }
}

impl PostgresScans {
    /// Connects to a database that holds prtip's tables, of this prtip's schema or older.
    pub fn open(url: &str) -> Result<PostgresScans, StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Postgres(format!("starting a runtime: {e}")))?;
        let client = runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(url, NoTls).await.map_err(db_error)?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            match schema_version(&client).await? {
                None => Err(StoreError::Postgres("the database holds no prtip scans".into())),
                Some(v) => refuse_newer(v).map(|()| client),
            }
        })?;
        Ok(PostgresScans { runtime, client })
    }

    /// The scans `scan` stands for: a fleet's, those its shards began.
    async fn ids(&self, scan: &ScanRef) -> Result<Vec<i64>, StoreError> {
        match scan {
            ScanRef::Scan(id) => Ok(vec![*id]),
            ScanRef::Fleet(which) => {
                let fleet = fleet_id(&self.client, which).await?;
                let rows = self
                    .client
                    .query(
                        "SELECT scan_id FROM fleet_shards WHERE fleet_id = $1 AND scan_id IS NOT NULL ORDER BY scan_id",
                        &[&fleet],
                    )
                    .await
                    .map_err(db_error)?;
                Ok(rows.iter().map(|r| r.get(0)).collect())
            }
        }
    }

    /// The rows `sql` selects of the scans `scan` stands for, given as `$1`.
    fn rows_of(&self, scan: &ScanRef, sql: &str) -> Result<Vec<Row>, StoreError> {
        self.runtime.block_on(async {
            let ids = self.ids(scan).await?;
            self.client.query(sql, &[&ids]).await.map_err(db_error)
        })
    }
}

impl StoredScans for PostgresScans {
    fn list(&self) -> Result<Vec<(ScanRef, ScanRow)>, StoreError> {
        self.runtime.block_on(async {
            let none: Option<i64> = None;
            let sql = format!("SELECT {SCAN_COLUMNS} FROM scans ORDER BY id");
            let scans = self.client.query(&sql, &[]).await.map_err(db_error)?;
            let fleets = self.client.query(FLEET_ROWS, &[&none]).await.map_err(db_error)?;
            Ok(scans
                .iter()
                .map(scan_row)
                .map(|s| (ScanRef::Scan(s.id), s))
                .chain(fleets.iter().map(fleet_row).map(|s| (ScanRef::Fleet(s.id.to_string()), s)))
                .collect())
        })
    }

    fn scan(&self, scan: &ScanRef) -> Result<Option<ScanRow>, StoreError> {
        self.runtime.block_on(async {
            match scan {
                ScanRef::Scan(id) => {
                    let sql = format!("SELECT {SCAN_COLUMNS} FROM scans WHERE id = $1");
                    Ok(self.client.query_opt(&sql, &[id]).await.map_err(db_error)?.as_ref().map(scan_row))
                }
                ScanRef::Fleet(which) => {
                    let id = Some(fleet_id(&self.client, which).await?);
                    Ok(self.client.query_opt(FLEET_ROWS, &[&id]).await.map_err(db_error)?.as_ref().map(fleet_row))
                }
            }
        })
    }

    fn config(&self, scan: &ScanRef) -> Result<Option<serde_json::Value>, StoreError> {
        let rows = self.rows_of(scan, "SELECT config FROM scans WHERE id = ANY($1) ORDER BY id LIMIT 1")?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    fn flagged(&self, scan: &ScanRef) -> Result<Vec<FlaggedHost>, StoreError> {
        let rows =
            self.rows_of(scan, "SELECT ip, open, probed, withheld FROM scan_flagged_hosts WHERE scan_id = ANY($1)")?;
        let n = |v: i64| v.max(0) as u64;
        // A fleet's shards each saw part of a host's ports: its flags add up.
        let mut hosts: std::collections::BTreeMap<IpAddr, FlaggedHost> = std::collections::BTreeMap::new();
        for r in &rows {
            let ip: IpAddr = r.get(0);
            let h = hosts.entry(ip).or_insert(FlaggedHost { ip, open: 0, probed: 0, withheld: 0 });
            h.open += n(r.get(1));
            h.probed += n(r.get(2));
            h.withheld += n(r.get(3));
        }
        Ok(hosts.into_values().collect())
    }

    fn services(&self, scan: &ScanRef) -> Result<HashMap<(IpAddr, u16), Service>, StoreError> {
        let rows = self.rows_of(
            scan,
            "SELECT ip, port, status, name, product, banner, tls::text, http::text FROM scan_services \
             WHERE scan_id = ANY($1)",
        )?;
        let mut out = HashMap::new();
        for r in &rows {
            let Ok(port) = u16::try_from(r.get::<_, i32>(1)) else { continue };
            let (tls, http): (Option<String>, Option<String>) = (r.get(6), r.get(7));
            let banner: Option<Vec<u8>> = r.get(5);
            let service =
                service_of(r.get(2), r.get(3), r.get(4), banner.unwrap_or_default(), tls.as_deref(), http.as_deref());
            out.insert((r.get(0), port), service);
        }
        Ok(out)
    }

    fn results(&self, scan: &ScanRef, open_only: bool) -> Result<Vec<ScanResult>, StoreError> {
        self.runtime.block_on(async {
            let ids = self.ids(scan).await?;
            let mut rows = results(&self.client, &ids, open_only).await?;
            rows.sort_unstable_by_key(|r| (r.ip, r.port));
            Ok(rows)
        })
    }

    fn latency(&self, scan: &ScanRef) -> Result<Vec<(Series, Histogram<u64>)>, StoreError> {
        let rows = self.rows_of(scan, "SELECT series, histogram FROM scan_latency WHERE scan_id = ANY($1)")?;
        let damaged = |e: latency::LatencyError| StoreError::Postgres(format!("a stored histogram: {e}"));
        let mut out: Vec<(Series, Histogram<u64>)> = Vec::new();
        for r in &rows {
            let series = Series::parse(r.get(0)).map_err(damaged)?;
            let histogram = latency::decode(series, r.get(1)).map_err(damaged)?;
            match out.iter_mut().find(|(s, _)| *s == series) {
                Some((_, sum)) => sum
                    .add(&histogram)
                    .map_err(|e| StoreError::Postgres(format!("adding the shards' histograms: {e:?}")))?,
                None => out.push((series, histogram)),
            }
        }
        out.sort_by_key(|(s, _)| *s);
        Ok(out)
    }
}

/// The stored results of the scans `ids`, in no order.
pub(in crate::store) async fn results(
    client: &Client,
    ids: &[i64],
    open_only: bool,
) -> Result<Vec<ScanResult>, StoreError> {
    let rows = client
        .query(
            "SELECT ip, port, state, reason, ttl, rtt_us, time FROM scan_results \
             WHERE scan_id = ANY($1) AND (NOT $2 OR state IN ('open', 'up'))",
            &[&ids, &open_only],
        )
        .await
        .map_err(db_error)?;
    rows.iter()
        .map(|r| {
            let (state, reason): (&str, &str) = (r.get(2), r.get(3));
            let time: SystemTime = r.get(6);
            Some(ScanResult {
                ip: r.get::<_, IpAddr>(0),
                port: u16::try_from(r.get::<_, i32>(1)).ok()?,
                state: PortState::parse(state)?,
                reason: Reason::parse(reason)?,
                ttl: r.get::<_, Option<i16>>(4).and_then(|t| u8::try_from(t).ok()),
                rtt_us: r.get::<_, Option<i64>>(5).map(|v| v.max(0) as u64),
                time_us: time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64),
            })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| StoreError::Postgres("a stored result this prtip cannot read".into()))
}
