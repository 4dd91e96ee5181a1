//! Consumer packages written by the binary: `ipam-gateway package vra` (the vRA IPAM provider zip).
//! The shims inside only marshal; every decision is made by the gateway, so it is tested in Rust.

mod png;
pub mod vra;
