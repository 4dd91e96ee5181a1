//! The Avi Load Balancer custom IPAM contract.
//!
//! The Avi controller runs a Python script with six functions (`TestLogin`,
//! `GetAvailableNetworksAndSubnets`, `GetIpamRecord`, `CreateIpamRecord`, `DeleteIpamRecord`,
//! `UpdateIpamRecord`). The generated script (`ipam-gateway package avi`) posts each function's
//! arguments to `POST /avi/v1/<function>` and returns the JSON it gets back, so every function
//! here takes exactly what Avi hands the script and answers exactly what the function returns.
//! A failure comes back as a non-2xx status with `{"error": {"exception", "message", …}}`, and
//! the script raises that exception class with that message (see [`errors`]).
//!
//! # What an Avi "network" is here
//!
//! Avi thinks in L2 networks carrying a v4 and/or a v6 subnet: its usable subnets are
//! `(network, v4_subnet, v6_subnet)` tuples and a dual-stack VIP takes one address from each
//! side. A gateway network is one subnet of one family. So:
//!
//! - every gateway network is an Avi network of one family: `network` is its gateway id
//!   (`local.ZGVm…`), its CIDR fills the `v4_subnet` or `v6_subnet` slot, the other is `None`;
//! - a v4 and a v6 network in the same address space with the same VLAN are one dual-stack
//!   network: `network` is `<v4 id>+<v6 id>` (gateway ids never contain `+`) and both slots are
//!   filled. Only the `V4_V6` listing shows these pairs, first, followed by every single-family
//!   network (as the stock Infoblox script lists v4 then v6);
//! - a tuple Avi sends back is resolved by its subnet CIDR (what the Avi admin sees and may type
//!   into the profile's usable subnets by hand); the `network` text only disambiguates when two
//!   exposed networks have the same CIDR. Tuples naming nothing this gateway exposes are skipped;
//! - an allocation's `network` is the gateway id of the network its address came from, or
//!   `<v4 id>+<v6 id>` for a dual-stack record: derived from what is held, so Get answers exactly
//!   what Create and Update answered.
//!
//! # Records
//!
//! A record is everything the owner `avi:<vsvip id>` holds (at most one address per family): the
//! owner is stored in the backend with the address, so Create is idempotent across retries,
//! restarts and replicas. The first fqdn is the record's hostname; all of them go into its
//! description. Update changes the allocation type, the preferred addresses, the subnets and the
//! fqdns in place: a new address is taken before the one it replaces is released, and an address
//! that stays is never touched but for its hostname.

use axum::Router;
use axum::extract::Path;
use axum::routing::post;

use crate::auth::gate::Protected;
use crate::domain::IpamError;

mod create;
pub mod dto;
pub mod errors;
mod login;
mod networks;
mod records;
mod request;
mod update;

/// The six functions of the script, in Avi's order: (function name, `POST /avi/v1/<path>`).
pub const FUNCTIONS: [(&str, &str); 6] = [
    ("TestLogin", "test-login"),
    (
        "GetAvailableNetworksAndSubnets",
        "get-available-networks-and-subnets",
    ),
    ("GetIpamRecord", "get-ipam-record"),
    ("CreateIpamRecord", "create-ipam-record"),
    ("DeleteIpamRecord", "delete-ipam-record"),
    ("UpdateIpamRecord", "update-ipam-record"),
];

/// `POST /avi/v1/<function>` for the six functions. Served through `auth::gate::protect` (it cannot be served otherwise).
pub fn router() -> Router<Protected> {
    Router::new()
        .route("/avi/v1/test-login", post(login::test_login))
        .route(
            "/avi/v1/get-available-networks-and-subnets",
            post(networks::get_available_networks_and_subnets),
        )
        .route("/avi/v1/get-ipam-record", post(records::get_ipam_record))
        .route(
            "/avi/v1/create-ipam-record",
            post(create::create_ipam_record),
        )
        .route(
            "/avi/v1/delete-ipam-record",
            post(records::delete_ipam_record),
        )
        .route(
            "/avi/v1/update-ipam-record",
            post(update::update_ipam_record),
        )
        .route("/avi/v1/{function}", post(unknown_function))
}

async fn unknown_function(Path(function): Path<String>) -> errors::AviError {
    let known: Vec<&str> = FUNCTIONS.iter().map(|(_, p)| *p).collect();
    errors::AviError::new(
        "avi",
        errors::AviException::NotImplemented,
        IpamError::Unsupported(format!(
            "no Avi function '{function}' (known: {})",
            known.join(", ")
        )),
    )
}
