//! A throwaway PostgreSQL cluster from Debian's package: `initdb` in a
//! temporary directory, run as nobody on a Unix socket there, stopped when
//! dropped. Self-contained, so that benches/ can use it too.

use std::path::Path;
use std::process::{Command, Stdio};

/// The test cluster's password: connections without it are refused.
pub const PASSWORD: &str = "scanner-secret";

/// A cluster of its own (initdb in `dir`, run as `nobody`, as PostgreSQL
/// refuses root), listening on a Unix socket in `dir` only.
pub struct Postgres {
    bin: std::path::PathBuf,
    data: std::path::PathBuf,
    /// The connection string prtip and psql are given.
    pub url: String,
}

impl Postgres {
    pub fn start(dir: &Path) -> Postgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL (Debian package postgresql) must be installed")
            .map(|e| e.unwrap().path().join("bin"))
            .find(|b| b.join("initdb").exists())
            .expect("no /usr/lib/postgresql/*/bin/initdb");
        let run = Path::new(dir).join("pg");
        std::fs::create_dir_all(&run).unwrap();
        let chown = Command::new("chown").args(["-R", "65534:65534"]).arg(&run).status().unwrap();
        assert!(chown.success());
        // The way down to it must be open to nobody too.
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let data = run.join("data");
        let pg = Postgres {
            bin,
            url: format!("host={} port=5432 user=prtip password={PASSWORD} dbname=postgres", run.display()),
            data: data.clone(),
        };
        let pwfile = run.join("password");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        let chown = Command::new("chown").args(["65534:65534"]).arg(&pwfile).status().unwrap();
        assert!(chown.success());
        let mut init = pg.as_nobody("initdb");
        init.args(["-U", "prtip", "--auth=scram-sha-256", "--pwfile"]).arg(&pwfile).arg("-D").arg(&data);
        let init = init.output().unwrap();
        assert!(init.status.success(), "initdb: {}", String::from_utf8_lossy(&init.stderr));
        let options = format!("-k {} -c listen_addresses='' -p 5432 -c fsync=off", run.display());
        let log = run.join("log");
        let started = pg.pg_ctl(&["start", "-w", "-l", &log.display().to_string(), "-o", &options]);
        assert!(started, "pg_ctl start: {}", std::fs::read_to_string(&log).unwrap_or_default());
        pg
    }

    fn as_nobody(&self, program: &str) -> Command {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(self.bin.join(program));
        c.stdin(Stdio::null()).stdout(Stdio::null());
        c
    }

    fn pg_ctl(&self, args: &[&str]) -> bool {
        self.as_nobody("pg_ctl").arg("-D").arg(&self.data).args(args).stderr(Stdio::null()).status().unwrap().success()
    }

    /// Stops the server at once (as a crash would) and starts it again.
    pub fn restart(&self) {
        assert!(self.pg_ctl(&["restart", "-w", "-m", "immediate"]), "pg_ctl restart");
    }

    /// `psql -Atc QUERY`: rows as `a|b` lines.
    pub fn query(&self, query: &str) -> String {
        self.query_in(&self.url, query)
    }

    /// The connection string of another database of the cluster.
    pub fn url_of(&self, database: &str) -> String {
        self.url.replace("dbname=postgres", &format!("dbname={database}"))
    }

    /// `query` in the database `url` names.
    pub fn query_in(&self, url: &str, query: &str) -> String {
        let out = Command::new(self.bin.join("psql")).args([url, "-Atc", query]).output().unwrap();
        assert!(out.status.success(), "psql {query}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["stop", "-m", "immediate"]);
    }
}
