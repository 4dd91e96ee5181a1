//! DNS registration: A/AAAA and PTR records for the addresses the gateway hands out, through
//! dynamic updates (RFC 2136) signed with TSIG (RFC 8945).
//!
//! This is the foundation layer: configuration ([`config`]), names ([`names`]) and the update
//! client ([`client::DnsUpdater`]). The service (`crate::service::DnsRegistry`) registers names
//! through it for the backends a section is attached to (`backends.<b>.dns`).

pub mod client;
pub mod config;
pub mod names;

use std::time::Duration;

pub use client::{DnsUpdater, OnFailure, ZoneCheck};
pub use config::{DnsConfig, DnsSettings, TsigAlgorithm};
pub use names::NameError;

/// Why a DNS update (or check) failed. Every variant names the zone; none carries the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// A name or zone the configuration cannot serve (bad name, no configured zone holds it).
    #[error("{0}")]
    Name(#[from] NameError),
    /// The server answered with an error code: `NOTAUTH`, `REFUSED`, … and the TSIG error
    /// (`BADSIG`, `BADKEY`, `BADTIME`) when the server gave one.
    #[error("DNS update of zone `{zone}` rejected by {server}: {answer}")]
    Rejected {
        zone: String,
        server: String,
        answer: String,
    },
    /// No answer within the configured timeout.
    #[error("DNS update of zone `{zone}`: no answer from {servers} within {}ms", after.as_millis())]
    Timeout {
        zone: String,
        servers: String,
        after: Duration,
    },
    /// The answer could not be had or trusted (socket error, unsigned or badly signed answer).
    #[error("DNS update of zone `{zone}` via {server}: {reason}")]
    Transport {
        zone: String,
        server: String,
        reason: String,
    },
}

impl DnsError {
    /// The label of `ipamgw_dns_updates_total{result}`.
    pub fn result_label(&self) -> &'static str {
        match self {
            DnsError::Name(_) => "bad_name",
            DnsError::Rejected { .. } => "rejected",
            DnsError::Timeout { .. } => "timeout",
            DnsError::Transport { .. } => "error",
        }
    }
}
