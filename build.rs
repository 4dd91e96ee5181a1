//! Sets `cfg(has_named)` when BIND's `named` is on this machine, so that the DNS tests that need
//! a real BIND (tests/api/dns.rs) run when it is there and show up as *ignored*, by name, when it
//! is not (never as passes). `tests/api/dns.rs::named_is_installed_under_ci` fails under `CI`
//! when it is missing. Where to look: `$IPAMGW_NAMED`, `/usr/sbin/named`, then `$PATH`
//! (tests/api/support/bind.rs looks in the same places).

use std::path::{Path, PathBuf};

fn named() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("IPAMGW_NAMED") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let sbin = Path::new("/usr/sbin/named");
    if sbin.is_file() {
        return Some(sbin.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("named"))
        .find(|p| p.is_file())
}

fn main() {
    println!("cargo::rustc-check-cfg=cfg(has_named)");
    println!("cargo::rerun-if-env-changed=IPAMGW_NAMED");
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-changed=/usr/sbin");
    println!("cargo::rerun-if-changed=build.rs");
    if named().is_some() {
        println!("cargo::rustc-cfg=has_named");
    }
}
