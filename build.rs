//! Compiles the XDP program in bpf/ with clang (the binary embeds the
//! object), and records the git revision for `prtip --version`.

use std::mem::{offset_of, size_of};
use std::path::PathBuf;
use std::process::Command;

// Only its constants and layout are used here: the crate fills the struct in.
#[allow(dead_code)]
#[path = "src/transport/xdp/abi.rs"]
mod abi;

/// What the XDP program must agree on with prtip, as clang -D defines.
fn abi_defines() -> Vec<String> {
    use abi::ProgramConfig as C;
    [
        ("PRTIP_MAX_QUEUES", abi::MAX_QUEUES as usize),
        ("PRTIP_MAX_SOURCES", abi::MAX_SOURCES),
        ("PRTIP_CONFIG_SIZE", size_of::<C>()),
        ("PRTIP_CONFIG_SRC_IP", offset_of!(C, src_ip)),
        ("PRTIP_CONFIG_PORT_LO", offset_of!(C, port_lo)),
        ("PRTIP_CONFIG_PORT_HI", offset_of!(C, port_hi)),
        ("PRTIP_CONFIG_SRC_IP6", offset_of!(C, src_ip6)),
        ("PRTIP_CONFIG_FAMILY", offset_of!(C, family)),
        ("PRTIP_CONFIG_PROTOCOL", offset_of!(C, protocol)),
        ("PRTIP_CONFIG_SOURCES", offset_of!(C, sources)),
        ("PRTIP_CONFIG_SEGMENTS", offset_of!(C, segments)),
    ]
    .iter()
    .map(|(name, value)| format!("-D{name}={value}"))
    .collect()
}

fn main() {
    let src = "bpf/prtip.bpf.c";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-changed=src/transport/xdp/abi.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("prtip.bpf.o");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    // Debian keeps asm/types.h under the multiarch include directory.
    let multiarch = format!("-I/usr/include/{arch}-linux-gnu");
    let status = Command::new("clang")
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf", &multiarch])
        .args(abi_defines())
        .args(["-c", src, "-o"])
        .arg(&out)
        .status()
        .unwrap_or_else(|e| panic!("running clang to build {src}: {e} (install clang: scripts/setup.sh)"));
    assert!(status.success(), "clang failed to compile {src}");

    // A source tarball has no .git: the version then says so rather than failing the build.
    let rev = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PRTIP_GIT_REV={rev}");
    for git in [".git/HEAD", ".git/refs/heads"] {
        if std::path::Path::new(git).exists() {
            println!("cargo:rerun-if-changed={git}");
        }
    }
}
