//! `prtip doctor`: what this machine and interface support, each line with
//! what to do when it falls short. It only asks the kernel; nothing is
//! attached or sent.

use crate::net;
use crate::transport::xdp::{self, AttachMode};
use clap::Args;
use std::fmt;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The interface to check [default: the default route's]
    #[arg(short = 'i', long, value_name = "IF")]
    interface: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Works, but slower or narrower than it could be.
    Warn,
    /// A transport or a feature cannot be used until this is fixed.
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub status: Status,
    pub name: &'static str,
    pub detail: String,
    /// What to do about a warning or a failure.
    pub advice: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check { status: Status::Ok, name, detail: detail.into(), advice: None }
    }

    fn warn(name: &'static str, detail: impl Into<String>, advice: impl Into<String>) -> Check {
        Check { status: Status::Warn, name, detail: detail.into(), advice: Some(advice.into()) }
    }

    fn ok_or_warn(ok: bool, name: &'static str, if_ok: &str, if_not: &str, advice: &str) -> Check {
        if ok { Check::ok(name, if_ok) } else { Check::warn(name, if_not, advice) }
    }

    fn fail(name: &'static str, detail: impl Into<String>, advice: impl Into<String>) -> Check {
        Check { status: Status::Fail, name, detail: detail.into(), advice: Some(advice.into()) }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match self.status {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        write!(f, "{status:<5} {:<13} {}", self.name, self.detail)?;
        if let Some(advice) = &self.advice {
            write!(f, " -> {advice}")?;
        }
        Ok(())
    }
}

const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// The effective capability set from the text of /proc/self/status.
pub fn effective_capabilities(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim();
    u64::from_str_radix(hex, 16).ok()
}

/// What the capabilities allow: raw sockets need CAP_NET_RAW; AF_XDP also
/// needs to load and attach BPF (CAP_BPF or CAP_SYS_ADMIN, and CAP_NET_ADMIN).
pub fn capability_check(effective: u64) -> Check {
    let has = |cap: u32| effective & (1 << cap) != 0;
    let mut missing = Vec::new();
    if !has(CAP_NET_RAW) {
        missing.push("CAP_NET_RAW");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    let advice = "run prtip as root, or `setcap cap_net_raw,cap_net_admin,cap_bpf,cap_ipc_lock+ep $(command -v prtip)`; connect scans (-sT) need neither";
    match (missing.is_empty(), has(CAP_NET_RAW)) {
        (true, _) => Check::ok("capabilities", "CAP_NET_RAW, CAP_NET_ADMIN and CAP_BPF held: both transports"),
        (false, true) => {
            Check::warn("capabilities", format!("missing {}: raw sockets only, no AF_XDP", missing.join(", ")), advice)
        }
        (false, false) => {
            let only = "connect scans (-sT) only: SYN, UDP and ICMP scans need raw sockets";
            Check::fail("capabilities", format!("missing {}: {only}", missing.join(", ")), advice)
        }
    }
}

/// The kernel release's major and minor numbers ("6.18.44-foo" is (6, 18)).
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

pub fn kernel_check(release: &str) -> Check {
    match kernel_version(release) {
        // BPF links for XDP arrived in 5.9; the driver feature report in 6.3.
        Some(v) if v >= (6, 3) => Check::ok("kernel", release),
        Some(v) if v >= (5, 9) => Check::warn(
            "kernel",
            format!("{release}: AF_XDP works, but the driver's XDP features are not reported"),
            "a 6.3 or later kernel lets prtip doctor check native XDP and zero-copy",
        ),
        _ => Check::fail(
            "kernel",
            format!("{release}: too old for XDP through a BPF link"),
            "use --transport raw, or a 5.9 or later kernel",
        ),
    }
}

fn release() -> String {
    crate::sys::kernel_release().unwrap_or_else(|_| "unknown".into())
}

fn interface_checks(ifname: &str) -> Vec<Check> {
    let index = match net::interface::index(ifname) {
        Ok(i) => i,
        Err(e) => return vec![Check::fail("interface", e.to_string(), "name one with --interface (see `ip link`)")],
    };
    let sys = format!("/sys/class/net/{ifname}");
    let up = std::fs::read_to_string(format!("{sys}/operstate")).map(|s| s.trim().to_string()).unwrap_or_default();
    let detail = match net::interface::queues(ifname, index) {
        Some((rx, tx)) => format!("{ifname}: {up}, {rx} receive and {tx} transmit queues"),
        None => format!("{ifname}: {up}, queues unknown (/sys shows another network namespace)"),
    };
    let mut checks = vec![if up == "up" || up == "unknown" {
        Check::ok("interface", detail)
    } else {
        Check::fail("interface", detail, format!("bring it up: ip link set {ifname} up"))
    }];
    match xdp::support(index) {
        Ok(s) => {
            checks.push(match s.attached {
                None => Check::ok("xdp program", "none attached"),
                Some((id, mode)) => Check::fail(
                    "xdp program",
                    format!("program {id} is attached ({}); prtip does not replace it", mode_name(mode)),
                    format!("use --transport raw, or detach it if it is stale: ip link set {ifname} xdp off"),
                ),
            });
            checks.push(Check::ok_or_warn(
                s.native,
                "xdp mode",
                "native: the driver runs XDP itself",
                "generic only: the driver has no native XDP",
                "AF_XDP works but slower; --transport raw may be as fast here",
            ));
            checks.push(Check::ok_or_warn(
                s.zero_copy,
                "af_xdp",
                "zero-copy offered by the driver",
                "copy mode only: the driver offers no zero-copy",
                "expected for veth and many virtual NICs; a NIC with zero-copy support is faster",
            ));
        }
        Err(e) => checks.push(Check::fail("xdp", e.to_string(), "use --transport raw")),
    }
    checks
}

fn mode_name(mode: AttachMode) -> &'static str {
    match mode {
        AttachMode::Native => "native",
        AttachMode::Generic => "generic",
        AttachMode::Offloaded => "offloaded",
        AttachMode::Multi => "several modes",
    }
}

fn io_uring_check() -> Check {
    match io_uring::IoUring::new(8) {
        // What a connect scan needs on top: the connect and close operations and timed waits.
        Ok(_) => match crate::sys::connect::Connector::new(1, false) {
            Ok(_) => Check::ok("io_uring", "available: storage, output files and connect scans work"),
            Err(e) => Check::warn(
                "io_uring",
                format!("available for storage and output files, not for connect scans: {e}"),
                "-sT needs Linux 5.11 or later",
            ),
        },
        Err(e) => {
            let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").unwrap_or_default();
            Check::fail(
                "io_uring",
                format!("unavailable ({e}); kernel.io_uring_disabled = {}", disabled.trim()),
                "--with-db, -o* files and -sT need it: sysctl kernel.io_uring_disabled=0",
            )
        }
    }
}

/// Runs `prtip doctor`: 0 when nothing failed, 1 otherwise.
pub fn main(args: DoctorArgs) -> ExitCode {
    let ifname = match args.interface {
        Some(name) => Ok(name),
        None => net::default_interface().map_err(|e| e.to_string()),
    };
    let mut checks = vec![kernel_check(&release())];
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    checks.push(match effective_capabilities(&status) {
        Some(caps) => capability_check(caps),
        None => Check::fail("capabilities", "cannot read /proc/self/status", "is /proc mounted?"),
    });
    match &ifname {
        Ok(name) => checks.extend(interface_checks(name)),
        Err(e) => checks.push(Check::fail("interface", format!("no default route ({e})"), "name one with --interface")),
    }
    checks.push(io_uring_check());
    for c in &checks {
        println!("{c}");
    }
    if checks.iter().any(|c| c.status == Status::Fail) { ExitCode::from(1) } else { ExitCode::SUCCESS }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_decide_the_transports() {
        let status = "Name:\tprtip\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        let all = effective_capabilities(status).unwrap();
        assert_eq!(capability_check(all).status, Status::Ok);
        let raw_only = 1 << CAP_NET_RAW;
        let c = capability_check(raw_only);
        assert_eq!(c.status, Status::Warn);
        assert!(c.detail.contains("missing CAP_NET_ADMIN, CAP_BPF: raw sockets only"), "{c}");
        let sys_admin_instead_of_bpf = (1 << CAP_NET_RAW) | (1 << CAP_NET_ADMIN) | (1 << CAP_SYS_ADMIN);
        assert_eq!(capability_check(sys_admin_instead_of_bpf).status, Status::Ok);
        let none = capability_check(0);
        assert_eq!(none.status, Status::Fail);
        assert!(none.to_string().starts_with("FAIL  capabilities  missing CAP_NET_RAW, CAP_NET_ADMIN, CAP_BPF"));
        assert!(none.to_string().contains(" -> run prtip as root"));
        assert_eq!(effective_capabilities("CapEff:\tzz\n"), None);
        assert_eq!(effective_capabilities(""), None);
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(kernel_version("6.18.44-fc-v782"), Some((6, 18)));
        assert_eq!(kernel_version("5.10.0"), Some((5, 10)));
        assert_eq!(kernel_version("garbage"), None);
        assert_eq!(kernel_check("6.18.44").status, Status::Ok);
        assert_eq!(kernel_check("5.15.0-91-generic").status, Status::Warn);
        assert_eq!(kernel_check("4.19.0").status, Status::Fail);
    }
}
