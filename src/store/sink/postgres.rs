//! The PostgreSQL sink (`--postgres URL`): a scan's row, its results, what
//! banners saw and its round-trip histograms in a schema that mirrors the
//! SQLite one. Results reach a journal of the sink's own first (io_uring,
//! as every journal here), then PostgreSQL by binary COPY straight into
//! `scan_results`, in the transaction that moves the journal's mark in
//! `scan_journals` (how far it is stored) from where the sink believes it
//! is: a piece is stored once or not at all, and after a lost connection
//! the mark says which. While the server cannot be reached the scan goes
//! on; the journal holds what waits, and the sink connects again with a
//! growing pause and sends it from where it stopped.

use super::{Failure, Sink, SinkFuture};
use crate::banner::Service;
use crate::engine::plan::Cursor;
use crate::result::ScanResult;
use crate::store::uring_file::UringFile;
use crate::store::{Finish, FleetShard, StoreConfig, StoreError, StoreReport, journal, lock, safe_open};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};
use tokio::time::Instant;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls};

/// The schema's version, kept in `prtip_schema`; a newer one is refused.
const VERSION: i32 = 1;
const SCHEMA: &str = r#"
CREATE TABLE prtip_schema (version integer NOT NULL);
CREATE TABLE scans (
    id             bigserial PRIMARY KEY,
    started_at     timestamptz NOT NULL,
    ended_at       timestamptz,
    command_line   text NOT NULL,
    config         jsonb NOT NULL,
    transport      text NOT NULL,
    seed           bigint NOT NULL,
    proto          smallint NOT NULL,
    probes_sent    bigint NOT NULL DEFAULT 0,
    open_count     bigint NOT NULL DEFAULT 0,
    closed_count   bigint NOT NULL DEFAULT 0,
    filtered_count bigint NOT NULL DEFAULT 0,
    status         text NOT NULL CHECK (status IN ('running', 'completed', 'interrupted'))
);
CREATE TABLE fleets (
    id         bigserial PRIMARY KEY,
    name       text UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    arguments  text[] NOT NULL,
    hosts      jsonb NOT NULL,
    seed       bigint NOT NULL,
    shards     integer NOT NULL,
    probes     bigint NOT NULL,
    lease_s    double precision NOT NULL
);
CREATE TABLE fleet_shards (
    fleet_id    bigint NOT NULL REFERENCES fleets(id),
    shard       integer NOT NULL,
    status      text NOT NULL CHECK (status IN ('free', 'leased', 'done')),
    worker      text,
    lease_until timestamptz,
    leases      integer NOT NULL DEFAULT 0,
    scan_id     bigint REFERENCES scans(id),
    checkpoint  jsonb,
    PRIMARY KEY (fleet_id, shard)
);
-- No foreign key: its check per row would cost most of the ingest rate.
CREATE TABLE scan_results (
    scan_id bigint NOT NULL,
    ip      inet NOT NULL,
    port    integer NOT NULL,
    proto   smallint NOT NULL,
    state   text NOT NULL,
    reason  text NOT NULL,
    ttl     smallint,
    rtt_us  bigint,
    time    timestamptz NOT NULL
);
CREATE INDEX scan_results_scan ON scan_results USING brin (scan_id);
CREATE TABLE scan_journals (
    scan_id     bigint NOT NULL REFERENCES scans(id),
    journal_key bigint NOT NULL,
    stored_to   bigint NOT NULL,
    PRIMARY KEY (scan_id, journal_key)
);
CREATE TABLE scan_latency (
    scan_id   bigint NOT NULL REFERENCES scans(id),
    series    text NOT NULL,
    histogram bytea NOT NULL,
    PRIMARY KEY (scan_id, series)
);
CREATE TABLE scan_flagged_hosts (
    scan_id  bigint NOT NULL REFERENCES scans(id),
    ip       inet NOT NULL,
    flag     text NOT NULL,
    open     bigint NOT NULL,
    probed   bigint NOT NULL,
    withheld bigint NOT NULL,
    PRIMARY KEY (scan_id, ip)
);
CREATE TABLE scan_services (
    scan_id bigint NOT NULL REFERENCES scans(id),
    ip      inet NOT NULL,
    port    integer NOT NULL,
    proto   smallint NOT NULL,
    status  text NOT NULL,
    name    text,
    product text,
    banner  bytea,
    tls     jsonb,
    http    jsonb,
    PRIMARY KEY (scan_id, ip, port, proto)
);
"#;

/// Rows sent in one COPY, and the journal bytes read for them (an IPv6
/// row takes 36 bytes, a record's header 20; a larger record is read whole).
const COPY_ROWS: usize = 65_536;
const PIECE_BYTES: u64 = 4 << 20;
/// Rows waiting in the journal before they are sent, or the longest they wait.
const SEND_AT: usize = 8192;
const SEND_EVERY: Duration = Duration::from_secs(1);
/// Pauses between attempts to connect again, doubling up to the longest.
const FIRST_PAUSE: Duration = Duration::from_millis(250);
const LONGEST_PAUSE: Duration = Duration::from_secs(8);
/// How long the end of a scan keeps trying to store what waits.
const LAST_TRIES: Duration = Duration::from_secs(30);

pub(in crate::store) struct PostgresSink {
    url: String,
    /// The journal's lock, held while the scan runs: `db recover` leaves it alone.
    _lock: std::fs::File,
    client: Option<Client>,
    scan_id: i64,
    proto: i16,
    /// Names the journal in `scan_journals`, where its mark is kept.
    journal_key: i64,
    store_silent: bool,
    /// `--open`: only open ports are kept; a fleet shard stores every
    /// answer while it runs, which a worker taking it over counts, and
    /// drops the others when it completes.
    open_only: bool,
    drop_closed_at_end: bool,
    journal: UringFile,
    unwritten: Vec<u8>,
    /// Journal bytes stored in PostgreSQL, and written to the file.
    stored_to: u64,
    written_to: u64,
    /// Rows journaled and not yet sent.
    waiting: usize,
    /// Services not yet stored (they are few: one per open port).
    services: Vec<(ScanResult, Service)>,
    /// When to try again after a failure, and the pause after that.
    retry_at: Option<Instant>,
    pause: Duration,
    last_sent: Instant,
    /// Times the connection was lost, and the last reason.
    lost: u64,
    why: Option<String>,
    /// The fleet shard this scan is, whose lease each send renews.
    fleet: Option<FleetShard>,
    /// The newest checkpoint, and the journal's length when it came: it is
    /// the shard's once that much is stored.
    checkpoint: Option<(Cursor, u64, u64)>,
    renewed: Instant,
}

/// The error with its cause: tokio-postgres says "error connecting to
/// server" and keeps why in its source.
pub(in crate::store) fn db_error(e: tokio_postgres::Error) -> StoreError {
    match std::error::Error::source(&e) {
        Some(cause) => StoreError::Postgres(format!("{e}: {cause}")),
        None => StoreError::Postgres(e.to_string()),
    }
}

/// How long connecting, and each send, may take before the server counts
/// as lost (a partition would otherwise hold the storage task for minutes).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

async fn connect(url: &str) -> Result<Client, StoreError> {
    let mut config: tokio_postgres::Config = url.parse().map_err(db_error)?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.keepalives_idle(Duration::from_secs(30));
    let (client, connection) = config.connect(NoTls).await.map_err(db_error)?;
    tokio_uring::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// A piece of a scan's journal: its rows, and the journal bytes they are.
struct Piece<'a> {
    scan_id: i64,
    proto: i16,
    journal_key: i64,
    from: u64,
    to: u64,
    rows: &'a [ScanResult],
}

/// One piece of a journal in one transaction: the journal's mark moved
/// from `from` to `to` (a mark elsewhere means the server holds another
/// part than the sink believes, and nothing is written), a fleet shard's
/// lease checked and renewed (only its worker stores its results), and
/// the rows copied in.
async fn copy(client: &mut Client, piece: &Piece<'_>, fleet: Option<&FleetShard>) -> Result<(), StoreError> {
    let tx = client.transaction().await.map_err(db_error)?;
    let marked = tx
        .execute(
            "UPDATE scan_journals SET stored_to = $4 WHERE scan_id = $1 AND journal_key = $2 AND stored_to = $3",
            &[&piece.scan_id, &piece.journal_key, &(piece.from as i64), &(piece.to as i64)],
        )
        .await
        .map_err(db_error)?;
    if marked != 1 {
        return Err(StoreError::Postgres(format!(
            "scan {}: the database does not hold this journal up to byte {}, where its next piece starts",
            piece.scan_id, piece.from
        )));
    }
    if let Some(f) = fleet {
        renew_lease(&tx, f, None).await?;
    }
    let sink = tx
        .copy_in("COPY scan_results (scan_id, ip, port, proto, state, reason, ttl, rtt_us, time) FROM STDIN BINARY")
        .await
        .map_err(db_error)?;
    let types = [
        Type::INT8,
        Type::INET,
        Type::INT4,
        Type::INT2,
        Type::TEXT,
        Type::TEXT,
        Type::INT2,
        Type::INT8,
        Type::TIMESTAMPTZ,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    let mut writer = std::pin::pin!(writer);
    for r in piece.rows {
        let port = i32::from(r.port);
        let ttl = r.ttl.map(i16::from);
        let rtt = r.rtt_us.map(|v| v.min(i64::MAX as u64) as i64);
        let time = UNIX_EPOCH + Duration::from_micros(r.time_us);
        let row: [&(dyn ToSql + Sync); 9] =
            [&piece.scan_id, &r.ip, &port, &piece.proto, &r.state.as_str(), &r.reason.as_str(), &ttl, &rtt, &time];
        writer.as_mut().write(&row).await.map_err(db_error)?;
    }
    writer.finish().await.map_err(db_error)?;
    tx.commit().await.map_err(db_error)
}

/// `text` as PostgreSQL's text and jsonb take it: they refuse NUL, which a
/// service may well send (its banner, a bytea, keeps the bytes as they came).
fn without_nul(text: &str) -> String {
    text.replace('\0', "\u{fffd}").replace("\\u0000", "\\ufffd")
}

/// Renews a shard's lease, with its checkpoint if one is given; fails if
/// the shard is no longer this worker's.
async fn renew_lease(
    client: &impl tokio_postgres::GenericClient,
    f: &FleetShard,
    checkpoint: Option<serde_json::Value>,
) -> Result<(), StoreError> {
    let renewed = client
        .execute(
            "UPDATE fleet_shards SET lease_until = now() + $4 * interval '1 second', \
             checkpoint = coalesce($5, checkpoint) \
             WHERE fleet_id = $1 AND shard = $2 AND leases = $3 AND status = 'leased'",
            &[&f.fleet_id, &f.shard, &f.lease_no, &f.lease.as_secs_f64(), &checkpoint],
        )
        .await
        .map_err(db_error)?;
    match renewed {
        0 => Err(StoreError::LeaseLost { fleet: f.fleet_id, shard: f.shard }),
        _ => Ok(()),
    }
}

/// The tables prtip makes, which a database without `prtip_schema` must not have.
const TABLES: [&str; 9] = [
    "prtip_schema",
    "scans",
    "fleets",
    "fleet_shards",
    "scan_results",
    "scan_journals",
    "scan_latency",
    "scan_flagged_hosts",
    "scan_services",
];
/// Serializes first uses of one database: concurrent `CREATE TABLE IF NOT
/// EXISTS` of one table can fail on PostgreSQL's catalog.
const SCHEMA_LOCK: i64 = 0x7072_7469_7073_6368;

/// Connects and brings the schema up to date, or changes nothing: a
/// database of a newer prtip, or one with tables of the same names that
/// are not prtip's, is refused.
pub(in crate::store) async fn open_schema(url: &str) -> Result<Client, StoreError> {
    let mut client = connect(url).await?;
    let tx = client.transaction().await.map_err(db_error)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK]).await.map_err(db_error)?;
    match schema_version(&tx).await? {
        Some(v) => refuse_newer(v)?,
        None => {
            let foreign: Option<String> = tx
                .query_one(
                    "SELECT string_agg(c.relname, ', ' ORDER BY c.relname) FROM pg_class c \
                     WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema()) \
                     AND c.relname = ANY($1)",
                    &[&&TABLES[..]],
                )
                .await
                .map_err(db_error)?
                .get(0);
            if let Some(tables) = foreign {
                return Err(StoreError::Postgres(format!(
                    "the database has tables named as prtip's ({tables}) but no prtip schema: give prtip a database of its own"
                )));
            }
            tx.batch_execute(SCHEMA).await.map_err(db_error)?;
            tx.execute("INSERT INTO prtip_schema VALUES ($1)", &[&VERSION]).await.map_err(db_error)?;
        }
    }
    tx.commit().await.map_err(db_error)?;
    Ok(client)
}

/// A database of a newer prtip is only ever refused: its tables may mean
/// something this version does not know.
pub(in crate::store) fn refuse_newer(version: i32) -> Result<(), StoreError> {
    match version {
        v if v > VERSION => Err(StoreError::Postgres(format!(
            "the database has prtip schema version {v}, newer than this prtip's {VERSION}"
        ))),
        _ => Ok(()),
    }
}

/// The schema version of prtip's tables, if the database has them.
pub(in crate::store) async fn schema_version(
    client: &impl tokio_postgres::GenericClient,
) -> Result<Option<i32>, StoreError> {
    let has: bool =
        client.query_one("SELECT to_regclass('prtip_schema') IS NOT NULL", &[]).await.map_err(db_error)?.get(0);
    if !has {
        return Ok(None);
    }
    let version: Option<i32> =
        client.query_one("SELECT max(version) FROM prtip_schema", &[]).await.map_err(db_error)?.get(0);
    version.map(Some).ok_or_else(|| StoreError::Postgres("the database's prtip_schema holds no version".into()))
}

/// Where a shard's scan stands, as `fleet work` reads it back.
fn checkpoint_json(c: Cursor, sent: u64) -> serde_json::Value {
    serde_json::json!({ "pass": c.pass, "position": c.position, "sent": sent })
}

/// A scan's journal in the state directory: `postgres-ID-KEY.journal`.
fn journal_name(scan_id: i64, key: i64) -> String {
    format!("postgres-{scan_id}-{:016x}.journal", key as u64)
}

fn parse_journal_name(name: &str) -> Option<(i64, i64)> {
    let (id, key) = name.strip_prefix("postgres-")?.strip_suffix(".journal")?.split_once('-')?;
    Some((id.parse().ok()?, u64::from_str_radix(key, 16).ok()? as i64))
}

/// What `db recover --postgres` did with one journal.
pub struct Recovered {
    pub journal: PathBuf,
    pub scan_id: i64,
    /// Results it held that were not stored yet, and now are.
    pub results: usize,
    /// The scan is a fleet shard's: its journal is left to the worker that
    /// takes the shard over, which scans again from its checkpoint.
    pub fleet_shard: bool,
}

/// Stores what the journals of killed scans of the server at `url` still
/// held past their marks, marks those scans interrupted and removes their
/// journals; removes those of killed fleet shards (their next worker
/// scans again what they held); leaves journals of running scans, and of
/// other servers, alone.
pub async fn recover(url: &str) -> Result<Vec<Recovered>, StoreError> {
    let mut client = open_schema(url).await?;
    let dir = crate::store::checkpoint::dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::journal(&dir)(e)),
    };
    let mut journals: Vec<(i64, i64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| parse_journal_name(&e.file_name().to_string_lossy()).map(|(id, key)| (id, key, e.path())))
        .collect();
    journals.sort();
    let mut recovered = Vec::new();
    for (scan_id, key, path) in journals {
        let row = client
            .query_opt(
                "SELECT s.proto, j.stored_to, EXISTS (SELECT 1 FROM fleet_shards f WHERE f.scan_id = s.id) \
                 FROM scan_journals j JOIN scans s ON s.id = j.scan_id WHERE j.scan_id = $1 AND j.journal_key = $2",
                &[&scan_id, &key],
            )
            .await
            .map_err(db_error)?;
        let Some(row) = row else { continue };
        let (proto, stored_to, fleet_shard): (i16, i64, bool) = (row.get(0), row.get(1), row.get(2));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(StoreError::journal(&path))?;
        if !lock::try_lock(&file).map_err(StoreError::journal(&path))? {
            continue;
        }
        if fleet_shard {
            std::fs::remove_file(&path).map_err(StoreError::journal(&path))?;
            recovered.push(Recovered { journal: path, scan_id, results: 0, fleet_shard });
            continue;
        }
        let bytes = read_all(&file).map_err(StoreError::journal(&path))?;
        let end = journal::intact_len(&bytes);
        let mut at = usize::try_from(stored_to).unwrap_or(usize::MAX).min(end);
        let mut results = 0;
        while at < end {
            let n = journal::records_up_to(&bytes[at..end], COPY_ROWS);
            let rows: Vec<ScanResult> = journal::rows_of(&bytes[at..at + n], scan_id).collect();
            let (from, to) = (at as u64, (at + n) as u64);
            copy(&mut client, &Piece { scan_id, proto, journal_key: key, from, to, rows: &rows }, None).await?;
            results += rows.len();
            at += n;
        }
        client
            .execute(
                "UPDATE scans SET status = 'interrupted', ended_at = coalesce(ended_at, now()) \
                 WHERE id = $1 AND status = 'running'",
                &[&scan_id],
            )
            .await
            .map_err(db_error)?;
        std::fs::remove_file(&path).map_err(StoreError::journal(&path))?;
        recovered.push(Recovered { journal: path, scan_id, results, fleet_shard });
    }
    Ok(recovered)
}

fn read_all(mut file: &std::fs::File) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut bytes)?;
    Ok(bytes)
}

impl PostgresSink {
    /// Connects, brings the schema up to date, begins the scan's row and
    /// its journal: a server that cannot be reached fails the scan here.
    pub(in crate::store) async fn open(url: &str, config: &StoreConfig) -> Result<PostgresSink, StoreError> {
        let mut client = open_schema(url).await?;
        let s = &config.start;
        let started = UNIX_EPOCH + Duration::from_micros(s.started_us);
        let config_json: serde_json::Value = serde_json::from_str(&s.config_json).unwrap_or_default();
        let proto = i16::from(config.info.scan_type.ip_protocol(false));
        // Names the journal with the scan: one of another server's scan of
        // the same number is not this one's.
        let key = crate::random::u64() as i64;
        let fleet = config.fleet.clone();
        // The scan's row, its shard's link to it and its journal's mark, all
        // or none; a shard's only while the lease is still this worker's.
        let tx = client.transaction().await.map_err(db_error)?;
        if let Some(f) = &fleet {
            renew_lease(&tx, f, None).await?;
        }
        let scan_id = match fleet.as_ref().and_then(|f| f.scan_id) {
            // A shard taken over goes on in the scan its first worker began.
            Some(id) => {
                tx.execute("UPDATE scans SET status = 'running', ended_at = NULL WHERE id = $1", &[&id])
                    .await
                    .map_err(db_error)?;
                id
            }
            None => {
                let row = tx
                    .query_one(
                        "INSERT INTO scans (started_at, command_line, config, transport, seed, proto, status) \
                         VALUES ($1, $2, $3, $4, $5, $6, 'running') RETURNING id",
                        &[&started, &s.command_line, &config_json, &s.transport, &(s.seed as i64), &proto],
                    )
                    .await
                    .map_err(db_error)?;
                row.get(0)
            }
        };
        if let Some(f) = fleet.as_ref().filter(|f| f.scan_id.is_none()) {
            tx.execute(
                "UPDATE fleet_shards SET scan_id = $3 WHERE fleet_id = $1 AND shard = $2",
                &[&f.fleet_id, &f.shard, &scan_id],
            )
            .await
            .map_err(db_error)?;
        }
        tx.execute("INSERT INTO scan_journals (scan_id, journal_key, stored_to) VALUES ($1, $2, 0)", &[&scan_id, &key])
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        let dir = crate::store::checkpoint::dir();
        safe_open::state_dir(&dir).map_err(StoreError::journal(&dir))?;
        let path = dir.join(journal_name(scan_id, key));
        let journal = UringFile::create(path.clone()).map_err(StoreError::journal(&path))?;
        let lock = std::fs::File::open(&path).and_then(|f| lock::lock(&f).map(|()| f));
        Ok(PostgresSink {
            _lock: lock.map_err(StoreError::journal(&path))?,
            url: url.to_string(),
            client: Some(client),
            scan_id,
            proto,
            journal_key: key,
            store_silent: config.store_silent,
            open_only: config.open_only && config.fleet.is_none(),
            drop_closed_at_end: config.open_only && config.fleet.is_some(),
            journal,
            unwritten: Vec::new(),
            stored_to: 0,
            written_to: 0,
            waiting: 0,
            services: Vec::new(),
            retry_at: None,
            pause: FIRST_PAUSE,
            last_sent: Instant::now(),
            lost: 0,
            why: None,
            fleet,
            checkpoint: None,
            renewed: Instant::now(),
        })
    }

    fn add_rows(&mut self, rows: &[ScanResult]) {
        if !rows.is_empty() {
            journal::encode(self.scan_id, rows, &mut self.unwritten);
            self.waiting += rows.len();
        }
    }

    /// Writes the journal, then sends what waits if there is enough, or it
    /// has waited long enough.
    async fn flush_rows(&mut self) -> Result<(), StoreError> {
        self.write_journal().await?;
        if self.due().is_some_and(|due| due <= Instant::now()) || self.waiting >= SEND_AT {
            self.send().await?;
        }
        Ok(())
    }

    async fn write_journal(&mut self) -> Result<(), StoreError> {
        if !self.unwritten.is_empty() {
            let bytes = std::mem::take(&mut self.unwritten);
            self.written_to += bytes.len() as u64;
            self.unwritten = self.journal.append(bytes).await.map_err(StoreError::journal(&self.journal.path))?;
        }
        Ok(())
    }

    /// When results wait to be sent, or the lease to be renewed; after a
    /// failure, not before the next attempt.
    fn due(&self) -> Option<Instant> {
        let rows = (self.waiting > 0 || !self.services.is_empty()).then(|| self.last_sent + SEND_EVERY);
        let renew = self.fleet.as_ref().map(|f| self.renewed + f.lease / 3);
        let due = rows.into_iter().chain(renew).min()?;
        Some(self.retry_at.map_or(due, |at| at.max(due)))
    }

    /// Sends what the journal holds past what is stored, and the services;
    /// on failure, drops the connection and sets when to try again. Fails
    /// only when this worker's fleet shard passed to another.
    async fn send(&mut self) -> Result<(), StoreError> {
        let now = Instant::now();
        if self.retry_at.is_some_and(|at| now < at) {
            return Ok(());
        }
        self.last_sent = now;
        let sent = match tokio::time::timeout(SEND_TIMEOUT, self.try_send()).await {
            Ok(sent) => sent,
            Err(_) => Err(StoreError::Postgres(format!("no answer within {} s", SEND_TIMEOUT.as_secs()))),
        };
        match sent {
            Ok(()) => {
                self.retry_at = None;
                self.pause = FIRST_PAUSE;
                Ok(())
            }
            Err(e @ StoreError::LeaseLost { .. }) => Err(e),
            Err(e) => {
                tracing::warn!(error = %e, pause = ?self.pause, "PostgreSQL: storing failed, trying again later");
                self.client = None;
                self.lost += 1;
                self.why = Some(e.to_string());
                self.retry_at = Some(now + self.pause);
                self.pause = (self.pause * 2).min(LONGEST_PAUSE);
                Ok(())
            }
        }
    }

    async fn try_send(&mut self) -> Result<(), StoreError> {
        if self.client.is_none() {
            let client = connect(&self.url).await?;
            // The last piece sent before the connection was lost may have
            // been stored: the mark says.
            let row = client
                .query_one(
                    "SELECT stored_to FROM scan_journals WHERE scan_id = $1 AND journal_key = $2",
                    &[&self.scan_id, &self.journal_key],
                )
                .await
                .map_err(db_error)?;
            // The server's mark, also when it is behind (it lost commits):
            // what it lacks is sent again.
            self.stored_to = (row.get::<_, i64>(0).max(0) as u64).min(self.written_to);
            self.client = Some(client);
        }
        while self.stored_to < self.written_to {
            let unstored = |bytes| self.unstored(bytes).map_err(StoreError::journal(&self.journal.path));
            let mut tail = unstored(PIECE_BYTES)?;
            let mut n = journal::records_up_to(&tail, COPY_ROWS);
            if let (0, Some(len)) = (n, tail.get(0..4)) {
                // One record larger than a piece: read it whole.
                tail = unstored(8 + u64::from(u32::from_le_bytes(len.try_into().expect("4 bytes"))))?;
                n = journal::records_up_to(&tail, COPY_ROWS);
            }
            if n == 0 {
                return Err(StoreError::Postgres(format!("journal {} is cut short", self.journal.path.display())));
            }
            if journal::intact_len(&tail[..n]) != n {
                return Err(StoreError::Postgres(format!(
                    "journal {} is damaged at byte {}",
                    self.journal.path.display(),
                    self.stored_to
                )));
            }
            let rows: Vec<ScanResult> = journal::rows_of(&tail[..n], self.scan_id).collect();
            let piece = Piece {
                scan_id: self.scan_id,
                proto: self.proto,
                journal_key: self.journal_key,
                from: self.stored_to,
                to: self.stored_to + n as u64,
                rows: &rows,
            };
            let client = self.client.as_mut().ok_or_else(|| StoreError::Postgres("not connected".into()))?;
            copy(client, &piece, self.fleet.as_ref()).await?;
            self.stored_to = piece.to;
        }
        self.waiting = 0;
        if !self.services.is_empty() {
            self.store_services().await?;
            self.services.clear();
        }
        if self.fleet.is_some() {
            self.renew().await?;
        }
        Ok(())
    }

    /// Renews the shard's lease, and stores its checkpoint once every
    /// result before it is stored: a worker that takes the shard over
    /// starts there.
    async fn renew(&mut self) -> Result<(), StoreError> {
        let (Some(f), Some(client)) = (&self.fleet, &self.client) else { return Ok(()) };
        let checkpoint = self.checkpoint.filter(|c| c.2 <= self.stored_to).map(|(c, sent, _)| checkpoint_json(c, sent));
        renew_lease(client, f, checkpoint).await?;
        self.renewed = Instant::now();
        Ok(())
    }

    /// Up to `bytes` of the journal's records written and not yet stored.
    fn unstored(&self, bytes: u64) -> std::io::Result<Vec<u8>> {
        use std::io::{Read, Seek};
        let mut file = std::fs::File::open(&self.journal.path)?;
        file.seek(std::io::SeekFrom::Start(self.stored_to))?;
        let mut tail = Vec::new();
        file.take((self.written_to - self.stored_to).min(bytes)).read_to_end(&mut tail)?;
        Ok(tail)
    }

    async fn store_services(&mut self) -> Result<(), StoreError> {
        let (scan_id, proto) = (self.scan_id, self.proto);
        let client = self.client.as_mut().ok_or_else(|| StoreError::Postgres("not connected".into()))?;
        let tx = client.transaction().await.map_err(db_error)?;
        let insert = tx
            .prepare(
                "INSERT INTO scan_services (scan_id, ip, port, proto, status, name, product, banner, tls, http) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (scan_id, ip, port, proto) DO UPDATE SET status = EXCLUDED.status, \
                 name = EXCLUDED.name, product = EXCLUDED.product, banner = EXCLUDED.banner, \
                 tls = EXCLUDED.tls, http = EXCLUDED.http",
            )
            .await
            .map_err(db_error)?;
        for (r, s) in &self.services {
            let (tls, http) = crate::store::db::service_json(s);
            let tls: Option<serde_json::Value> = tls.and_then(|t| serde_json::from_str(&without_nul(&t)).ok());
            let http: Option<serde_json::Value> = http.and_then(|h| serde_json::from_str(&without_nul(&h)).ok());
            let name = s.name.as_deref().map(without_nul);
            let product = s.product.as_deref().map(without_nul);
            let banner = (!s.banner.is_empty()).then_some(&s.banner);
            tx.execute(
                &insert,
                &[
                    &scan_id,
                    &r.ip,
                    &i32::from(r.port),
                    &proto,
                    &s.status.as_str(),
                    &name,
                    &product,
                    &banner,
                    &tls,
                    &http,
                ],
            )
            .await
            .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn close(mut self, finish: &Finish, report: &mut StoreReport) -> Result<(), StoreError> {
        self.flush_rows().await?;
        let give_up = Instant::now() + LAST_TRIES;
        // Everything stored, then the scan's end; each tried again on failure.
        let ended = loop {
            self.retry_at = None;
            self.send().await?;
            let stored = self.stored_to == self.written_to && self.services.is_empty();
            let ended = match (stored, self.client.is_some()) {
                (true, true) => self.end_scan(finish).await,
                _ => Err(StoreError::Postgres(self.why.clone().unwrap_or_else(|| "not connected".into()))),
            };
            match ended {
                Ok(()) => break Ok(()),
                Err(e @ StoreError::LeaseLost { .. }) => return Err(e),
                Err(e) if Instant::now() >= give_up => break Err(e),
                Err(e) => {
                    if stored {
                        self.client = None;
                        self.why = Some(e.to_string());
                    }
                    tokio::time::sleep(self.pause).await;
                    self.pause = (self.pause * 2).min(LONGEST_PAUSE);
                }
            }
        };
        report.postgres_lost = self.lost;
        match ended {
            Ok(()) => {
                report.postgres_scan = Some(self.scan_id);
                let _ = self.journal.file.close().await;
                std::fs::remove_file(&self.journal.path).map_err(StoreError::journal(&self.journal.path))
            }
            Err(e) => {
                let why = match e {
                    StoreError::Postgres(why) => why,
                    e => e.to_string(),
                };
                Err(StoreError::Postgres(format!(
                    "{why}; what was not stored is kept in {}",
                    self.journal.path.display()
                )))
            }
        }
    }

    /// The scan's row closed, and its histograms stored.
    async fn end_scan(&mut self, finish: &Finish) -> Result<(), StoreError> {
        let scan_id = self.scan_id;
        let client = self.client.as_mut().ok_or_else(|| StoreError::Postgres("not connected".into()))?;
        let tx = client.transaction().await.map_err(db_error)?;
        // A worker whose shard passed to another ends nothing of it.
        if let Some(f) = &self.fleet {
            renew_lease(&tx, f, None).await?;
        }
        let s = &finish.scan;
        let ended = UNIX_EPOCH + Duration::from_micros(s.ended_us);
        let status = if s.interrupted { "interrupted" } else { "completed" };
        let count = |v: u64| v.min(i64::MAX as u64) as i64;
        tx.execute(
            "UPDATE scans SET ended_at = $2, probes_sent = $3, open_count = $4, closed_count = $5, \
             filtered_count = $6, status = $7 WHERE id = $1",
            &[&scan_id, &ended, &count(s.probes_sent), &count(s.open), &count(s.closed), &count(s.filtered), &status],
        )
        .await
        .map_err(db_error)?;
        if let Some(f) = &self.fleet {
            // Done, or free for the next worker from its last checkpoint.
            let shard = if s.interrupted { "free" } else { "done" };
            let checkpoint = self.checkpoint.map(|(c, sent, _)| checkpoint_json(c, sent));
            tx.execute(
                "UPDATE fleet_shards SET status = $4, lease_until = NULL, checkpoint = coalesce($5, checkpoint) \
                 WHERE fleet_id = $1 AND shard = $2 AND leases = $3",
                &[&f.fleet_id, &f.shard, &f.lease_no, &shard, &checkpoint],
            )
            .await
            .map_err(db_error)?;
        }
        if self.drop_closed_at_end && !s.interrupted {
            tx.execute("DELETE FROM scan_results WHERE scan_id = $1 AND state NOT IN ('open', 'up')", &[&scan_id])
                .await
                .map_err(db_error)?;
        }
        // A resumed scan's counts cover its earlier runs: its flags replace theirs.
        tx.execute("DELETE FROM scan_flagged_hosts WHERE scan_id = $1", &[&scan_id]).await.map_err(db_error)?;
        for h in &finish.run.flagged {
            tx.execute(
                "INSERT INTO scan_flagged_hosts (scan_id, ip, flag, open, probed, withheld) VALUES ($1, $2, $3, $4, $5, $6)",
                &[&scan_id, &h.ip, &crate::open_hosts::FLAG, &count(h.open), &count(h.probed), &count(h.withheld)],
            )
            .await
            .map_err(db_error)?;
        }
        for (series, histogram) in finish.latency.encode() {
            tx.execute(
                "INSERT INTO scan_latency (scan_id, series, histogram) VALUES ($1, $2, $3) \
                 ON CONFLICT (scan_id, series) DO UPDATE SET histogram = EXCLUDED.histogram",
                &[&scan_id, &series.name(), &histogram],
            )
            .await
            .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }
}

impl Sink for PostgresSink {
    fn failure(&self) -> Failure {
        Failure::Results
    }

    fn add<'a>(&'a mut self, batch: &'a [ScanResult], answered: &'a [ScanResult]) -> SinkFuture<'a> {
        let rows = if self.store_silent { batch } else { answered };
        if self.open_only {
            let open: Vec<ScanResult> = rows.iter().filter(|r| r.state.is_found()).copied().collect();
            self.add_rows(&open);
        } else {
            self.add_rows(rows);
        }
        super::done()
    }

    fn services<'a>(&'a mut self, batch: &'a [(ScanResult, Service)]) -> SinkFuture<'a> {
        self.services.extend_from_slice(batch);
        super::done()
    }

    fn checkpoint(&mut self, cursor: Cursor, sent: u64) -> SinkFuture<'_> {
        self.checkpoint = Some((cursor, sent, self.written_to + self.unwritten.len() as u64));
        super::done()
    }

    fn flush(&mut self) -> SinkFuture<'_> {
        Box::pin(self.flush_rows())
    }

    fn sync_due(&self) -> Option<Instant> {
        self.due()
    }

    fn sync(&mut self) -> SinkFuture<'_> {
        Box::pin(async {
            self.write_journal().await?;
            self.send().await
        })
    }

    fn finish<'a>(self: Box<Self>, finish: &'a Finish, report: &'a mut StoreReport) -> SinkFuture<'a> {
        Box::pin((*self).close(finish, report))
    }
}
