//! What banners saw on open ports (`scan_services`), keyed like the
//! results: one row per port, its TLS chain and HTTP head as JSON, which
//! `sqlite3` users read with `json_extract`.

use super::Db;
use crate::banner::cert::Certificate;
use crate::banner::http::Head;
use crate::banner::{Service, Status, Tls};
use crate::store::StoreError;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::IpAddr;

pub(super) const SCHEMA: &str = r#"
CREATE TABLE scan_services (
    scan_id INTEGER NOT NULL REFERENCES scans(id),
    addr    NOT NULL,
    port    INTEGER NOT NULL,
    proto   INTEGER NOT NULL,
    status  TEXT NOT NULL,
    name    TEXT,
    product TEXT,
    banner  BLOB,
    tls     TEXT,
    http    TEXT,
    PRIMARY KEY (scan_id, addr, port, proto)
) WITHOUT ROWID;
"#;

/// An address as `scan_result_rows` keys it: IPv4 as an integer, IPv6 as text.
fn addr_value(ip: IpAddr) -> rusqlite::types::Value {
    match ip {
        IpAddr::V4(a) => rusqlite::types::Value::Integer(i64::from(u32::from(a))),
        IpAddr::V6(a) => rusqlite::types::Value::Text(a.to_string()),
    }
}

/// A service's TLS chain and HTTP head as the JSON both databases keep.
pub fn service_json(s: &Service) -> (Option<String>, Option<String>) {
    (s.tls.as_ref().map(tls_json), s.http.as_ref().map(http_json))
}

fn tls_json(t: &Tls) -> String {
    let chain: Vec<Value> = t
        .chain
        .iter()
        .map(|c| {
            json!({"subject": c.subject, "issuer": c.issuer, "san": c.san,
                   "not_before": c.not_before, "not_after": c.not_after, "sha256": c.sha256})
        })
        .collect();
    json!({"version": t.version, "chain": chain}).to_string()
}

/// A service as either database keeps it, its TLS chain and HTTP head as JSON.
pub fn service_of(
    status: &str,
    name: Option<String>,
    product: Option<String>,
    banner: Vec<u8>,
    tls: Option<&str>,
    http: Option<&str>,
) -> Service {
    Service {
        status: Status::parse(status).unwrap_or(Status::Grabbed),
        name,
        product,
        banner,
        tls: tls.and_then(tls_of),
        http: http.and_then(http_of),
    }
}

fn tls_of(text: &str) -> Option<Tls> {
    let v: Value = serde_json::from_str(text).ok()?;
    let version = match v["version"].as_str()? {
        "TLSv1.3" => "TLSv1.3",
        "TLSv1.2" => "TLSv1.2",
        _ => "TLS",
    };
    let s = |c: &Value, k: &str| c[k].as_str().unwrap_or_default().to_string();
    let chain = v["chain"]
        .as_array()?
        .iter()
        .map(|c| Certificate {
            subject: s(c, "subject"),
            issuer: s(c, "issuer"),
            san: c["san"].as_array().into_iter().flatten().filter_map(|n| n.as_str().map(String::from)).collect(),
            not_before: s(c, "not_before"),
            not_after: s(c, "not_after"),
            sha256: s(c, "sha256"),
        })
        .collect();
    Some(Tls { version, chain })
}

fn http_json(h: &Head) -> String {
    json!({"status": h.status, "server": h.server, "title": h.title, "location": h.location}).to_string()
}

fn http_of(text: &str) -> Option<Head> {
    let v: Value = serde_json::from_str(text).ok()?;
    let s = |k: &str| v[k].as_str().map(String::from);
    Some(Head {
        status: u16::try_from(v["status"].as_u64()?).ok()?,
        server: s("server"),
        title: s("title"),
        location: s("location"),
    })
}

impl Db {
    /// Stores what banners saw, replacing what a port had (a resumed scan asks again).
    pub fn insert_services<'a>(
        &mut self,
        scan_id: i64,
        services: impl IntoIterator<Item = (IpAddr, u16, &'a Service)>,
    ) -> Result<(), StoreError> {
        let fail = StoreError::database(&self.path);
        let tx = self.conn.transaction().map_err(fail)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO scan_services \
                     (scan_id, addr, port, proto, status, name, product, banner, tls, http) \
                     VALUES (?1, ?2, ?3, 6, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(fail)?;
            for (ip, port, s) in services {
                let (tls, http) = service_json(s);
                stmt.execute(rusqlite::params![
                    scan_id,
                    addr_value(ip),
                    port,
                    s.status.as_str(),
                    s.name,
                    s.product,
                    (!s.banner.is_empty()).then_some(&s.banner),
                    tls,
                    http,
                ])
                .map_err(fail)?;
            }
        }
        tx.commit().map_err(fail)
    }

    /// What banners saw on the ports of scan `id`.
    pub fn services_of(&self, id: i64) -> Result<HashMap<(IpAddr, u16), Service>, StoreError> {
        let fail = StoreError::database(&self.path);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT addr, port, status, name, product, banner, tls, http FROM scan_services WHERE scan_id = ?1",
            )
            .map_err(fail)?;
        let mut rows = stmt.query([id]).map_err(fail)?;
        let mut out = HashMap::new();
        while let Some(r) = rows.next().map_err(fail)? {
            let Some(ip) = super::read::addr_of(r.get_ref(0).map_err(fail)?) else { continue };
            let status: String = r.get(2).map_err(fail)?;
            let tls: Option<String> = r.get(6).map_err(fail)?;
            let http: Option<String> = r.get(7).map_err(fail)?;
            let service = service_of(
                &status,
                r.get(3).map_err(fail)?,
                r.get(4).map_err(fail)?,
                r.get::<_, Option<Vec<u8>>>(5).map_err(fail)?.unwrap_or_default(),
                tls.as_deref(),
                http.as_deref(),
            );
            out.insert((ip, r.get(1).map_err(fail)?), service);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_and_http_read_back_as_stored() {
        let tls = Tls {
            version: "TLSv1.3",
            chain: vec![Certificate {
                subject: "CN=prtip.test".into(),
                issuer: "CN=prtip.test".into(),
                san: vec!["prtip.test".into(), "10.0.0.1".into()],
                not_before: "2026-12-04T00:00:00Z".into(),
                not_after: "2027-01-03T00:00:00Z".into(),
                sha256: "ab".repeat(32),
            }],
        };
        assert_eq!(tls_of(&tls_json(&tls)), Some(tls));
        let head = Head { status: 301, server: Some("nginx".into()), title: None, location: Some("/x".into()) };
        assert_eq!(http_of(&http_json(&head)), Some(head));
    }
}
