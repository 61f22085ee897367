//! Compiles the XDP program in bpf/ with clang (the binary embeds the
//! object), and records the git revision for `prtip --version`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "bpf/prtip.bpf.c";
    println!("cargo:rerun-if-changed={src}");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("prtip.bpf.o");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    // Debian keeps asm/types.h under the multiarch include directory.
    let multiarch = format!("-I/usr/include/{arch}-linux-gnu");
    let status = Command::new("clang")
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf", &multiarch, "-c", src, "-o"])
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
