//! Consumer packages written by the binary: `ipam-gateway package vra` (the vRA IPAM provider zip)
//! `ipam-gateway package avi` (the Avi custom IPAM script) and `ipam-gateway package avi-dns` (the
//! Avi custom DNS script).
//! The shims inside only marshal; every decision is made by the gateway, so it is tested in Rust.

pub mod avi;
pub mod avi_dns;
mod png;
pub mod vra;
