//! Storage ingest: results per second through the whole storage task
//! (channel, io_uring journal, SQLite inserts or PostgreSQL COPY), from the
//! first batch sent to the moment `finish` returns with everything
//! committed. The PostgreSQL part runs a throwaway cluster of its own (as
//! the tests do: Debian's postgresql, root to run it as nobody).

#[path = "../tests/common/postgres.rs"]
#[allow(dead_code)]
mod postgres;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use prtip::output::RunInfo;
use prtip::result::{PortState, Reason, ScanResult};
use prtip::store::db::ScanStart;
use prtip::store::{Finish, Store, StoreConfig};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

const ROWS: u32 = 1_000_000;

/// A scan's answers, in the random order a scan receives them.
fn results() -> Vec<ScanResult> {
    let mut rows: Vec<ScanResult> = (0..ROWS)
        .map(|i| ScanResult {
            ip: Ipv4Addr::from(0x0ac9_0000 + (i >> 4)).into(),
            port: (i & 15) as u16 + 1,
            state: if i % 6 == 0 { PortState::Open } else { PortState::Closed },
            reason: if i % 6 == 0 { Reason::SynAck } else { Reason::Reset },
            ttl: Some(64),
            rtt_us: (i % 6 == 0).then_some(150),
            time_us: 1_795_912_496_000_000 + u64::from(i),
        })
        .collect();
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    for i in (1..rows.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        rows.swap(i, (x % (i as u64 + 1)) as usize);
    }
    rows
}

fn config(dir: &Path, postgres: Option<&str>) -> StoreConfig {
    StoreConfig {
        database: postgres.is_none().then(|| dir.join("bench.db")),
        postgres: postgres.map(str::to_string),
        fleet: None,
        store_silent: false,
        open_only: false,
        max_open_per_host: None,
        files: vec![],
        start: ScanStart {
            started_us: 0,
            command_line: "bench".into(),
            config_json: "{}".into(),
            transport: "raw".into(),
            seed: 0,
        },
        info: RunInfo::default(),
        checkpoint: None,
        checkpoint_file: None,
        resume_scan: None,
    }
}

fn ingest(c: &mut Criterion) {
    let all = results();
    let mut g = c.benchmark_group("storage");
    g.throughput(Throughput::Elements(u64::from(ROWS)));
    g.sample_size(10);
    let base = std::env::temp_dir().join(format!("prtip-bench-{}", std::process::id()));
    let cluster = tempfile::Builder::new().prefix("prtip-bench-pg-").tempdir().unwrap();
    let pg = postgres::Postgres::start(cluster.path());
    // The sink's journals go to the state directory: one of the bench's own.
    // SAFETY: no other thread runs yet.
    unsafe { std::env::set_var("XDG_STATE_HOME", base.join("state")) };
    let mut n = 0;
    for (name, postgres) in [("SQLite", None), ("PostgreSQL", Some(pg.url.as_str()))] {
        g.bench_function(format!("ingest into {name} through the storage task"), |b| {
            b.iter_batched(
                || {
                    n += 1;
                    let dir = base.join(n.to_string());
                    std::fs::create_dir_all(&dir).unwrap();
                    if postgres.is_some() {
                        // Each sample into an empty table, as the first does.
                        pg.query(
                            "DO $$ BEGIN IF to_regclass('scan_results') IS NOT NULL \
                             THEN TRUNCATE scan_results; END IF; END $$",
                        );
                    }
                    (dir, all.chunks(1024).map(<[ScanResult]>::to_vec).collect::<Vec<_>>())
                },
                |(dir, batches)| {
                    let mut store = Store::start(config(&dir, postgres)).unwrap();
                    for batch in batches {
                        store.send(batch);
                    }
                    let report = store.finish(Finish::default()).unwrap();
                    match postgres {
                        // Counted in the time: a conservative figure.
                        Some(_) => assert_eq!(pg.query("SELECT count(*) FROM scan_results"), ROWS.to_string()),
                        None => assert_eq!(report.rows_stored, u64::from(ROWS)),
                    }
                    std::fs::remove_dir_all(&dir).unwrap();
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
    let _ = std::fs::remove_dir_all(&base);
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    targets = ingest
}
criterion_main!(benches);
