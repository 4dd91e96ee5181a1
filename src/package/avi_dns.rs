//! The Avi custom DNS script: one standard-library Python file to upload to the controller
//! (Templates → Profiles → Custom IPAM/DNS, used by a custom DNS profile).
//! `ipam-gateway package avi-dns [--out FILE]`.
//!
//! The script defines the four functions and five exception classes of the stock custom DNS
//! script (`../shared/contracts/avi.md` §8); each function posts its arguments to the gateway's
//! `/avi/dns/v1/` endpoints, so every decision is made (and tested) in Rust.

use crate::contracts::avi_dns::{EXCEPTION_CLASSES, FUNCTIONS};
pub use crate::package::avi::{DEFAULT_TIMEOUT_SECS, ScriptError, check_file_name};

const SCRIPT: &str = include_str!("templates/avi_dns/ipam_gateway_avi_dns.py");

/// The default file name: a PEP 8 module name, as the controller requires.
pub const DEFAULT_FILE_NAME: &str = "ipam_gateway_avi_dns.py";

/// The functions as the script defines them: the records come first and `auth_params` last
/// (the reverse of the IPAM functions).
const SIGNATURES: [&str; 4] = [
    "def TestLogin(auth_params):",
    "def GetAvailableDomains(auth_params):",
    "def CreateOrUpdateDnsRecords(new_records_info, old_records_info, auth_params):",
    "def DeleteDnsRecords(records_info, auth_params):",
];

/// The script text.
pub fn script() -> Result<String, ScriptError> {
    let out = SCRIPT
        .replace(
            "@PLUMBING@\n",
            &crate::package::avi::plumbing("CustomDns", "ipam-gateway-avi-dns-script"),
        )
        .replace("@GATEWAY_VERSION@", env!("CARGO_PKG_VERSION"))
        .replace("@TIMEOUT_SECONDS@", &DEFAULT_TIMEOUT_SECS.to_string());
    if out.contains('@') {
        return Err(ScriptError::Template(
            "a template placeholder has no value".into(),
        ));
    }
    let needed = SIGNATURES
        .iter()
        .map(|s| (*s).to_owned())
        .chain(FUNCTIONS.iter().map(|(_, p)| format!("\"{p}\"")))
        .chain(
            EXCEPTION_CLASSES
                .iter()
                .map(|c| format!("class {c}(Exception):")),
        );
    for name in needed {
        if !out.contains(&name) {
            return Err(ScriptError::Template(format!(
                "the template lacks `{name}`"
            )));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dns_script_defines_the_contract_surface_in_its_argument_order() {
        let s = script().expect("script");
        for sig in SIGNATURES {
            assert!(s.contains(sig), "{sig}");
        }
        for (_, path) in FUNCTIONS {
            assert!(s.contains(&format!("\"{path}\"")), "{path}");
        }
        for c in EXCEPTION_CLASSES {
            assert!(s.contains(&format!("class {c}(Exception):")), "{c}");
        }
        assert!(s.contains("API_PREFIX = \"/avi/dns/v1/\""));
        assert!(
            !s.contains("CustomIpam"),
            "no IPAM class leaks into the DNS script"
        );
        assert!(!s.contains('@'), "every placeholder filled");
    }

    #[test]
    fn the_dns_script_uses_only_the_standard_library() {
        let s = script().expect("script");
        let allowed = [
            "import base64",
            "import json",
            "import logging",
            "import os",
            "import socket",
            "import ssl",
            "import urllib.error",
            "import urllib.request",
        ];
        for i in s
            .lines()
            .filter(|l| l.starts_with("import ") || l.starts_with("from "))
        {
            assert!(allowed.contains(&i), "unexpected import: {i}");
        }
        assert!(check_file_name(DEFAULT_FILE_NAME).is_ok());
    }
}
