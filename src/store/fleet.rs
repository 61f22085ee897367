//! Fleet scans in PostgreSQL: one scan split into shards that workers on
//! many machines lease (`SELECT ... FOR UPDATE SKIP LOCKED`), renew while
//! they scan (the PostgreSQL sink does, with the shard's checkpoint), and
//! mark done. A lease that runs out (its worker died) makes the shard free
//! again, and the next worker resumes it from its checkpoint in the scan its
//! first worker began.

use super::StoreError;
use super::sink::postgres::{db_error, open_schema};
use crate::engine::plan::Cursor;
use crate::result::ScanResult;
use std::time::Duration;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

/// A fleet scan as `fleet create` recorded it.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub id: i64,
    /// A name of the user's, unique among the database's fleets.
    pub name: Option<String>,
    /// The scan's arguments, without shard, seed and storage.
    pub arguments: Vec<String>,
    /// Its hosts as resolved once, in the checkpoint's form.
    pub hosts: serde_json::Value,
    pub seed: u64,
    pub shards: u32,
    pub lease: Duration,
}

/// A shard a worker now holds.
pub struct Lease {
    pub fleet: Fleet,
    pub shard: i32,
    /// Which lease of the shard this is.
    pub lease_no: i32,
    /// The scan an earlier worker began, where it got to, and what it stored.
    pub scan_id: Option<i64>,
    pub checkpoint: Option<(Cursor, u64)>,
    pub prior: Vec<ScanResult>,
}

pub enum Next {
    Leased(Box<Lease>),
    /// Every shard not done is leased: one may yet be freed, by its lease
    /// running out, at the latest by then.
    Wait(Duration),
    AllDone,
}

/// Records a fleet scan of `shards` shards, all or nothing; returns its id.
pub fn create(url: &str, fleet: &Fleet, probes: u64) -> Result<i64, StoreError> {
    tokio_uring::start(async {
        let mut client = open_schema(url).await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let row = tx
            .query_one(
                "INSERT INTO fleets (name, arguments, hosts, seed, shards, probes, lease_s) \
                 VALUES ($7, $1, $2, $3, $4, $5, $6) RETURNING id",
                &[
                    &fleet.arguments,
                    &fleet.hosts,
                    &(fleet.seed as i64),
                    &(fleet.shards as i32),
                    &(probes.min(i64::MAX as u64) as i64),
                    &fleet.lease.as_secs_f64(),
                    &fleet.name,
                ],
            )
            .await
            .map_err(|e| match (e.code(), &fleet.name) {
                (Some(&SqlState::UNIQUE_VIOLATION), Some(name)) => {
                    StoreError::Postgres(format!("a fleet named {name} exists already: name this one otherwise"))
                }
                _ => db_error(e),
            })?;
        let id: i64 = row.get(0);
        tx.execute(
            "INSERT INTO fleet_shards (fleet_id, shard, status) SELECT $1, n, 'free' FROM generate_series(1, $2) n",
            &[&id, &(fleet.shards as i32)],
        )
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(id)
    })
}

/// The id of the fleet `which` names: its id or its name.
pub fn resolve(url: &str, which: &str) -> Result<i64, StoreError> {
    tokio_uring::start(async { fleet_id(&open_schema(url).await?, which).await })
}

pub(in crate::store) async fn fleet_id(client: &Client, which: &str) -> Result<i64, StoreError> {
    let row = client
        .query_opt("SELECT id FROM fleets WHERE name = $1 OR id::text = $1 LIMIT 1", &[&which])
        .await
        .map_err(db_error)?;
    row.map(|r| r.get(0)).ok_or_else(|| StoreError::NoFleet(which.to_string()))
}

/// Leases the first free shard (of fleet `only`, or of any), or one whose
/// lease ran out, to `worker`.
pub fn lease(url: &str, only: Option<i64>, worker: &str) -> Result<Next, StoreError> {
    tokio_uring::start(async {
        let mut client = open_schema(url).await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let row = tx
            .query_opt(
                "SELECT s.fleet_id, s.shard, s.scan_id, s.checkpoint FROM fleet_shards s \
                 WHERE (s.status = 'free' OR (s.status = 'leased' AND s.lease_until < now())) \
                 AND ($1::bigint IS NULL OR s.fleet_id = $1) \
                 ORDER BY s.fleet_id, s.shard LIMIT 1 FOR UPDATE SKIP LOCKED",
                &[&only],
            )
            .await
            .map_err(db_error)?;
        let Some(row) = row else {
            drop(tx);
            return waiting(&client, only).await;
        };
        let (fleet_id, shard): (i64, i32) = (row.get(0), row.get(1));
        let scan_id: Option<i64> = row.get(2);
        let checkpoint: Option<serde_json::Value> = row.get(3);
        let fleet = read_fleet(&tx, fleet_id).await?;
        let lease_no: i32 = tx
            .query_one(
                "UPDATE fleet_shards SET status = 'leased', worker = $3, leases = leases + 1, \
                 lease_until = now() + $4 * interval '1 second' WHERE fleet_id = $1 AND shard = $2 RETURNING leases",
                &[&fleet_id, &shard, &worker, &fleet.lease.as_secs_f64()],
            )
            .await
            .map_err(db_error)?
            .get(0);
        tx.commit().await.map_err(db_error)?;
        // A shard whose scan was begun goes on in it, from its checkpoint or
        // (its first worker died before storing one) from its first probe,
        // with what was stored taken over either way.
        let begun = Cursor { pass: 0, position: 0 };
        let checkpoint = checkpoint.as_ref().and_then(parse_checkpoint).or(scan_id.map(|_| (begun, 0)));
        let prior = match (scan_id, checkpoint) {
            (Some(id), Some(_)) => super::postgres_scans::results(&client, &[id], false).await?,
            _ => Vec::new(),
        };
        Ok(Next::Leased(Box::new(Lease { fleet, shard, lease_no, scan_id, checkpoint, prior })))
    })
}

/// Gives up lease `lease_no` of a shard whose scan never began (this
/// worker's options do not fit it): the next worker may take it at once
/// rather than when the lease runs out.
pub fn release(url: &str, fleet_id: i64, shard: i32, lease_no: i32) -> Result<(), StoreError> {
    tokio_uring::start(async {
        let client = open_schema(url).await?;
        client
            .execute(
                "UPDATE fleet_shards SET lease_until = now() - interval '1 second' \
                 WHERE fleet_id = $1 AND shard = $2 AND leases = $3 AND status = 'leased'",
                &[&fleet_id, &shard, &lease_no],
            )
            .await
            .map_err(db_error)?;
        Ok(())
    })
}

async fn waiting(client: &Client, only: Option<i64>) -> Result<Next, StoreError> {
    let row = client
        .query_one(
            "SELECT count(*), extract(epoch FROM min(lease_until) - now())::float8 FROM fleet_shards \
             WHERE status <> 'done' AND ($1::bigint IS NULL OR fleet_id = $1)",
            &[&only],
        )
        .await
        .map_err(db_error)?;
    let (left, soonest): (i64, Option<f64>) = (row.get(0), row.get(1));
    Ok(match left {
        0 => Next::AllDone,
        _ => Next::Wait(Duration::from_secs_f64(soonest.unwrap_or(0.0).clamp(0.0, 3600.0))),
    })
}

async fn read_fleet(client: &impl tokio_postgres::GenericClient, id: i64) -> Result<Fleet, StoreError> {
    let row = client
        .query_one("SELECT name, arguments, hosts, seed, shards, lease_s FROM fleets WHERE id = $1", &[&id])
        .await
        .map_err(db_error)?;
    Ok(Fleet {
        id,
        name: row.get(0),
        arguments: row.get(1),
        hosts: row.get(2),
        seed: row.get::<_, i64>(3) as u64,
        shards: row.get::<_, i32>(4) as u32,
        lease: Duration::from_secs_f64(row.get(5)),
    })
}

fn parse_checkpoint(v: &serde_json::Value) -> Option<(Cursor, u64)> {
    let number = |key: &str| v[key].as_u64();
    Some((Cursor { pass: u32::try_from(number("pass")?).ok()?, position: number("position")? }, number("sent")?))
}

/// One shard as `fleet status` shows it.
pub struct ShardStatus {
    pub fleet_id: i64,
    pub shards: u32,
    pub shard: i32,
    pub status: String,
    pub worker: Option<String>,
    /// Seconds the lease still holds (negative: it ran out).
    pub lease_left: Option<f64>,
    pub leases: i32,
    pub scan_id: Option<i64>,
    /// Probes sent, as of the last checkpoint or the end.
    pub sent: u64,
    pub results: u64,
    /// Seconds since the shard's scan began, to its end.
    pub seconds: Option<f64>,
}

/// Every shard of fleet `only`, or of all fleets.
pub fn status(url: &str, only: Option<i64>) -> Result<Vec<ShardStatus>, StoreError> {
    tokio_uring::start(async {
        let client = open_schema(url).await?;
        let rows = client
            .query(
                "SELECT f.id, f.shards, s.shard, s.status, s.worker, \
                 extract(epoch FROM s.lease_until - now())::float8, s.leases, s.scan_id, \
                 greatest((s.checkpoint->>'sent')::bigint, sc.probes_sent, 0), \
                 (SELECT count(*) FROM scan_results r WHERE r.scan_id = s.scan_id), \
                 extract(epoch FROM coalesce(sc.ended_at, now()) - sc.started_at)::float8 \
                 FROM fleets f JOIN fleet_shards s ON s.fleet_id = f.id LEFT JOIN scans sc ON sc.id = s.scan_id \
                 WHERE ($1::bigint IS NULL OR f.id = $1) ORDER BY f.id, s.shard",
                &[&only],
            )
            .await
            .map_err(db_error)?;
        Ok(rows
            .iter()
            .map(|r| ShardStatus {
                fleet_id: r.get(0),
                shards: r.get::<_, i32>(1) as u32,
                shard: r.get(2),
                status: r.get(3),
                worker: r.get(4),
                lease_left: r.get(5),
                leases: r.get(6),
                scan_id: r.get(7),
                sent: r.get::<_, i64>(8).max(0) as u64,
                results: r.get::<_, i64>(9).max(0) as u64,
                seconds: r.get(10),
            })
            .collect())
    })
}
