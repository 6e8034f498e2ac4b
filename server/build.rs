//! Builds the XDP program (src/xdp/program.bpf.c) with clang, for the AF_XDP path
//! (docs/xdp.md). Without clang (or libbpf-dev's headers) the server is built without it and
//! says so at start when `[listen] xdp` is set; everything else is unchanged.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "src/xdp/program.bpf.c";
    println!("cargo:rerun-if-changed={source}");
    println!("cargo:rerun-if-env-changed=CLANG");
    // Built again once libbpf-dev is installed (a missing file counts as changed).
    println!("cargo:rerun-if-changed=/usr/include/bpf/bpf_helpers.h");
    println!("cargo::rustc-check-cfg=cfg(xdp_program)");
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("program.bpf.o");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    // <asm/types.h> lives in the target's multiarch directory on Debian.
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let multiarch = format!("/usr/include/{arch}-linux-gnu");
    let built = Command::new(&clang)
        .args([
            "-target", "bpf", "-O2", "-g", "-Wall", "-Werror", "-I", &multiarch, "-c", source, "-o",
        ])
        .arg(&out)
        .output();
    match built {
        Ok(o) if o.status.success() => println!("cargo:rustc-cfg=xdp_program"),
        Ok(o) => println!(
            "cargo:warning=the XDP program did not build ({clang}: {}); this build answers UDP on sockets only",
            String::from_utf8_lossy(&o.stderr).lines().next().unwrap_or("failed")
        ),
        Err(e) => println!(
            "cargo:warning=no {clang} ({e}): the XDP program is not built; this build answers UDP on sockets only (install clang and libbpf-dev for the AF_XDP path)"
        ),
    }
}
