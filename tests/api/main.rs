//! Integration tests: one binary, one module per feature.

mod support;
// Moved into `support/`; kept at their old paths (`crate::vra_common::…`) for existing and new suites.
use support::{avi_common, resilience_proxy, vra_common};

mod allocations;
mod auth;
mod avi_dns_python;
mod avi_functions;
mod avi_package;
mod avi_python;
mod avi_validator;
mod backend_tls;
mod deploy;
mod dns;
mod dns_avi;
mod dns_props;
mod dns_vra;
mod dns_wired;
mod edges;
mod fuzz;
mod health;
mod infoblox_adapter;
mod infoblox_fake;
mod infoblox_routers;
mod networks;
mod phpipam_adapter;
mod phpipam_carve;
mod phpipam_fake;
mod phpipam_limits;
mod process;
mod replicas;
mod resilience;
mod resilience_crash;
mod resilience_relogin;
mod resilience_retry;
mod security;
mod setup_check;
mod soak;
mod vra_allocate;
mod vra_networks;
mod vra_package;
mod vra_python;
mod vra_ranges;
mod vra_records;
mod vra_validate;
