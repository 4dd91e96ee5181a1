//! Consumer contracts: each module speaks one caller's wire shapes and error envelope (the native
//! API, vRA, Avi IPAM, Avi DNS), and talks to the core only in domain terms. What they share is
//! here too: the JSON error envelope ([`ErrorBody`]), the HTTP status of a domain error
//! ([`status::status_of`]) and the input readers ([`input`]).

pub mod avi;
pub mod avi_dns;
pub mod error_body;
pub mod input;
pub mod native;
pub mod status;
pub mod vra;

pub use error_body::ErrorBody;

/// The message both contracts put in a failed call's answer: `<call>: <context>: <error>; <note>`
/// (what was called, what it was doing, why it failed, what happened next, e.g. the rollback).
pub(crate) fn failure_message(
    call: &str,
    context: Option<&str>,
    error: &crate::domain::IpamError,
    note: Option<&str>,
) -> String {
    let mut m = match context {
        Some(c) => format!("{call}: {c}: {error}"),
        None => format!("{call}: {error}"),
    };
    if let Some(n) = note {
        m.push_str("; ");
        m.push_str(n);
    }
    m
}
