//! Integration tests: one binary, one module per feature.

mod support;

mod allocations;
mod auth;
mod edges;
mod health;
mod networks;
mod process;
