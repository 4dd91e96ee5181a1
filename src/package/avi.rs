//! The Avi custom IPAM script: one standard-library Python file to upload to the controller
//! (Templates → Profiles → Custom IPAM/DNS). `ipam-gateway package avi [--out FILE]`.
//!
//! The script defines the six functions and five exception classes Avi requires; each function
//! posts its arguments to the gateway's `/avi/v1/` endpoints and returns the answer, so every
//! decision is made (and tested) in Rust.

use crate::contracts::avi::FUNCTIONS;
use crate::contracts::avi::errors::EXCEPTION_CLASSES;

const SCRIPT: &str = include_str!("templates/avi/ipam_gateway_avi.py");

/// What the Avi IPAM and DNS scripts share (reading the script parameters, TLS, posting to the
/// gateway, turning its answers into the script's exceptions): one text, written into each
/// script where it says `@PLUMBING@`, since each script is uploaded on its own.
const PLUMBING: &str = include_str!("templates/avi_plumbing.py");

/// The shared plumbing for one script: its exception classes start with `exceptions`
/// (`CustomIpam`, `CustomDns`) and its requests say `user_agent`.
pub(crate) fn plumbing(exceptions: &str, user_agent: &str) -> String {
    PLUMBING
        .replace("@EXC@", exceptions)
        .replace("@USER_AGENT@", user_agent)
}

/// The default file name: a PEP 8 module name, as the controller requires.
pub const DEFAULT_FILE_NAME: &str = "ipam_gateway_avi.py";

/// Seconds the script waits for the gateway unless the `timeout` script parameter says otherwise.
pub const DEFAULT_TIMEOUT_SECS: u32 = 60;

#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("invalid {field}: {why}")]
    Invalid { field: &'static str, why: String },
    #[error("cannot write the script: {0}")]
    Template(String),
}

/// Whether a file name is one the controller accepts: `.py`, a lower-case PEP 8 module name.
pub fn check_file_name(name: &str) -> Result<(), ScriptError> {
    let stem = name
        .strip_suffix(".py")
        .ok_or_else(|| ScriptError::Invalid {
            field: "out",
            why: format!("'{name}' must end in .py (the controller requires it)"),
        })?;
    let ok = stem
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && stem
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        return Err(ScriptError::Invalid {
            field: "out",
            why: format!(
                "'{name}' is not a PEP 8 module name: lower case letters, digits and '_', \
                 starting with a letter (e.g. {DEFAULT_FILE_NAME})"
            ),
        });
    }
    Ok(())
}

/// The script text.
pub fn script() -> Result<String, ScriptError> {
    let out = SCRIPT
        .replace(
            "@PLUMBING@\n",
            &plumbing("CustomIpam", "ipam-gateway-avi-script"),
        )
        .replace("@GATEWAY_VERSION@", env!("CARGO_PKG_VERSION"))
        .replace("@TIMEOUT_SECONDS@", &DEFAULT_TIMEOUT_SECS.to_string());
    if out.contains('@') {
        return Err(ScriptError::Template(
            "a template placeholder has no value".into(),
        ));
    }
    for name in FUNCTIONS.iter().map(|(f, _)| format!("def {f}(")).chain(
        EXCEPTION_CLASSES
            .iter()
            .map(|c| format!("class {c}(Exception)")),
    ) {
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
    fn the_script_defines_every_function_and_exception_and_calls_every_endpoint() {
        let s = script().expect("script");
        for (f, path) in FUNCTIONS {
            assert!(s.contains(&format!("def {f}(auth_params")), "{f}");
            assert!(s.contains(&format!("\"{path}\"")), "{path}");
        }
        for c in EXCEPTION_CLASSES {
            assert!(s.contains(&format!("class {c}(Exception):")), "{c}");
        }
        assert!(!s.contains('@'), "every placeholder filled");
        assert!(s.contains(&format!("DEFAULT_TIMEOUT = {DEFAULT_TIMEOUT_SECS}")));
    }

    #[test]
    fn the_script_uses_only_the_standard_library() {
        let s = script().expect("script");
        let imports: Vec<&str> = s
            .lines()
            .filter(|l| l.starts_with("import ") || l.starts_with("from "))
            .collect();
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
        for i in &imports {
            assert!(allowed.contains(i), "unexpected import: {i}");
        }
    }

    #[test]
    fn file_names_must_be_pep8_modules() {
        assert!(check_file_name(DEFAULT_FILE_NAME).is_ok());
        assert!(check_file_name("ipam2.py").is_ok());
        assert!(check_file_name("Ipam-Gateway.py").is_err());
        assert!(check_file_name("ipam_gateway").is_err());
        assert!(check_file_name("2ipam.py").is_err());
    }
}
