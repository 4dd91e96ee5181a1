//! GetAvailableNetworksAndSubnets: the networks of one family, or IPv4/IPv6 pairs that share a
//! name, as Avi lists them.

use axum::body::Bytes;
use axum::extract::State;

use super::dto::{AllocationType, NetworkEntry, allocation_type};
use super::errors::{AviError, core};
use super::request::{AviResult, PAIR_SEPARATOR, answer, check_backend, parse_body};
use crate::contracts::input::Field;
use crate::domain::{Family, Network};
use crate::service::Caller;
use crate::state::AppState;

pub(super) fn count(n: &Network) -> Option<String> {
    n.info.free.map(|f| f.to_string())
}

pub(super) fn single(n: &Network) -> NetworkEntry {
    let cidr = Some(n.info.cidr.to_string());
    match n.family() {
        Family::V4 => NetworkEntry {
            network: n.id.to_string(),
            v4_subnet: cidr,
            v6_subnet: None,
            v4_available_ip_count: count(n),
            v6_available_ip_count: None,
        },
        Family::V6 => NetworkEntry {
            network: n.id.to_string(),
            v4_subnet: None,
            v6_subnet: cidr,
            v4_available_ip_count: None,
            v6_available_ip_count: count(n),
        },
    }
}

/// A v4 and a v6 network are one dual-stack network when they share address space and VLAN.
fn paired(v4: &Network, v6: &Network) -> bool {
    v4.info.vlan.is_some()
        && v4.info.vlan == v6.info.vlan
        && v4.info.address_space == v6.info.address_space
}

/// The listing for an `ip_type` (see the module docs for what a "network" is).
pub(super) fn entries(nets: &[Network], ip_type: AllocationType) -> Vec<NetworkEntry> {
    let v4: Vec<&Network> = nets.iter().filter(|n| n.family() == Family::V4).collect();
    let v6: Vec<&Network> = nets.iter().filter(|n| n.family() == Family::V6).collect();
    let mut out = Vec::new();
    if ip_type == AllocationType::V4V6 {
        for a in &v4 {
            for b in v6.iter().filter(|b| paired(a, b)) {
                out.push(NetworkEntry {
                    network: format!("{}{PAIR_SEPARATOR}{}", a.id, b.id),
                    v4_subnet: Some(a.info.cidr.to_string()),
                    v6_subnet: Some(b.info.cidr.to_string()),
                    v4_available_ip_count: count(a),
                    v6_available_ip_count: count(b),
                });
            }
        }
    }
    if ip_type != AllocationType::V6Only {
        out.extend(v4.iter().map(|n| single(n)));
    }
    if ip_type != AllocationType::V4Only {
        out.extend(v6.iter().map(|n| single(n)));
    }
    out
}

pub(super) async fn get_available_networks_and_subnets(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> AviResult {
    const F: &str = "GetAvailableNetworksAndSubnets";
    let body = parse_body(F, &body)?;
    check_backend(F, &body, &caller)?;
    let root = Field::root(&body).map_err(core(F))?;
    let ip_type = allocation_type(&root.get("ip_type"))
        .map_err(core(F))?
        .unwrap_or(AllocationType::V4V6);
    let nets = state.ipam.network_snapshot(&caller).await.map_err(|e| {
        AviError::from_core(F, e).with_context(format!("listing backend '{}'", caller.backend))
    })?;
    answer(entries(&nets, ip_type))
}
