//! Consumer packages written by the binary: `ipam-gateway package vra` (the vRA IPAM provider zip)
//! and `ipam-gateway package avi` (the Avi custom IPAM script).
//! The shims inside only marshal; every decision is made by the gateway, so it is tested in Rust.

pub mod avi;
mod png;
pub mod vra;
