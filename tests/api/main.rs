//! Integration tests: one binary, one module per feature.

mod support;

mod allocations;
mod auth;
mod avi_common;
mod avi_functions;
mod avi_package;
mod avi_python;
mod avi_validator;
mod deploy;
mod edges;
mod fuzz;
mod health;
mod infoblox_adapter;
mod infoblox_fake;
mod networks;
mod phpipam_adapter;
mod phpipam_carve;
mod phpipam_fake;
mod process;
mod replicas;
mod resilience;
mod resilience_crash;
mod resilience_proxy;
mod resilience_relogin;
mod resilience_retry;
mod security;
mod soak;
mod vra_allocate;
mod vra_common;
mod vra_networks;
mod vra_package;
mod vra_python;
mod vra_ranges;
mod vra_records;
mod vra_validate;
