//! Records: what an owner's holdings make of an Avi record, the candidate networks of a
//! request, the messages of a rollback; GetIpamRecord and DeleteIpamRecord.

use axum::body::Bytes;
use axum::extract::State;

use super::dto::{AllocInfo, AllocationType, RecordInfo, record_info};
use super::errors::{AviError, core};
use super::request::{
    AviResult, PAIR_SEPARATOR, answer, check_backend, held_names, net_label, owner_of, parse_body,
    required_id,
};
use crate::domain::{Allocation, Family, IpamError, Lookup, Network, NetworkId, Owner};
use crate::service::{Caller, Rollback};
use crate::state::AppState;

/// The record an owner's holdings make: one address per family (the first by network id and
/// address if an interrupted update left two), `network` from the networks they came from.
pub(super) async fn alloc_info(
    state: &AppState,
    caller: &Caller,
    held: &[Allocation],
) -> Result<AllocInfo, IpamError> {
    let mut sorted: Vec<&Allocation> = held.iter().collect();
    sorted.sort_by(|a, b| (&a.network_id, a.address).cmp(&(&b.network_id, b.address)));
    let mut info = AllocInfo::default();
    let mut ids: Vec<String> = Vec::new();
    for family in [Family::V4, Family::V6] {
        let mine: Vec<&&Allocation> = sorted
            .iter()
            .filter(|a| Family::of_addr(&a.address) == family)
            .collect();
        let Some(a) = mine.first() else { continue };
        if mine.len() > 1 {
            tracing::warn!(owner = ?a.owner, family = %family, count = mine.len(),
                "an Avi record holds more than one address of a family; reporting the first");
        }
        let net = state.ipam.network(caller, &a.network_id).await?;
        let (ip, subnet) = (Some(a.address.to_string()), Some(net.info.cidr.to_string()));
        match family {
            Family::V4 => (info.v4_ip, info.v4_subnet) = (ip, subnet),
            Family::V6 => (info.v6_ip, info.v6_subnet) = (ip, subnet),
        }
        ids.push(a.network_id.to_string());
    }
    info.network = ids.join(&PAIR_SEPARATOR.to_string());
    Ok(info)
}

/// What record `id` (owner `owner`) holds; errors name the record.
pub(super) async fn held_by(
    f: &'static str,
    state: &AppState,
    caller: &Caller,
    id: &str,
    owner: &Owner,
) -> Result<Vec<Allocation>, AviError> {
    state
        .ipam
        .find(caller, &Lookup::Owner(owner.clone()))
        .await
        .map_err(|e| AviError::from_core(f, e).with_context(format!("record '{id}'")))
}

/// Like [`held_by`], for functions on an existing record: one that holds nothing is not found.
pub(super) async fn existing_record(
    f: &'static str,
    state: &AppState,
    caller: &Caller,
    id: &str,
    owner: &Owner,
) -> Result<Vec<Allocation>, AviError> {
    let held = held_by(f, state, caller, id, owner).await?;
    if held.is_empty() {
        return Err(AviError::record_not_found(f, id));
    }
    Ok(held)
}

/// Where an address of `family` may come from, in order: the subnets of `nw_and_subnet_list`
/// this gateway exposes (all exposed networks of the family when the list is empty), narrowed to
/// those containing the preferred address. `None` when the list names no subnet of the family
/// and `constrain_only` is set (Update: "no subnet change").
pub(super) fn candidates(
    nets: &[Network],
    r: &RecordInfo,
    family: Family,
    path: &str,
    constrain_only: bool,
) -> Result<Option<Vec<NetworkId>>, IpamError> {
    let list_field = format!("{path}.nw_and_subnet_list");
    let mut out: Vec<&Network> = Vec::new();
    let mut unknown: Vec<String> = Vec::new();
    let mut named = false;
    for choice in &r.subnets {
        let ids: Vec<&str> = choice
            .network
            .as_deref()
            .map(|t| t.split(PAIR_SEPARATOR).map(str::trim).collect())
            .unwrap_or_default();
        let by_id = |n: &&Network| ids.iter().any(|i| *i == n.id.as_str());
        let found: Vec<&Network> = match choice.subnet(family) {
            Some(cidr) => {
                named = true;
                let same: Vec<&Network> = nets.iter().filter(|n| n.info.cidr == cidr).collect();
                match same.iter().find(|n| by_id(n)) {
                    Some(n) => vec![*n],
                    None if same.len() > 1 => {
                        return Err(IpamError::invalid(
                            &choice.path,
                            format!(
                                "{cidr} is exposed by {} networks ({}); put the gateway network id \
                                 from GetAvailableNetworksAndSubnets in the tuple's network",
                                same.len(),
                                same.iter()
                                    .map(|n| n.id.to_string())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ));
                    }
                    None => same,
                }
            }
            None => nets
                .iter()
                .filter(|n| n.family() == family)
                .filter(by_id)
                .inspect(|_| named = true)
                .collect(),
        };
        if found.is_empty() {
            if let Some(cidr) = choice.subnet(family) {
                unknown.push(format!("{cidr} ({})", choice.path));
            }
            continue;
        }
        for n in found {
            if !out.iter().any(|o| o.id == n.id) {
                out.push(n);
            }
        }
    }
    if out.is_empty() {
        if !unknown.is_empty() {
            return Err(IpamError::invalid(
                list_field,
                format!(
                    "no {family} subnet given is exposed by this gateway: {}",
                    unknown.join(", ")
                ),
            ));
        }
        if named || !r.subnets.is_empty() {
            if constrain_only {
                return Ok(None);
            }
            return Err(IpamError::invalid(
                list_field,
                format!(
                    "names no {family} subnet, and allocation_type {} needs one",
                    r.allocation_type
                        .map(AllocationType::as_str)
                        .unwrap_or("V4_ONLY")
                ),
            ));
        }
        if constrain_only {
            return Ok(None);
        }
        out = nets.iter().filter(|n| n.family() == family).collect();
        if out.is_empty() {
            return Err(IpamError::NotFound(format!(
                "this gateway exposes no {family} network"
            )));
        }
    }
    if let Some(p) = r.preferred(family) {
        let inside: Vec<&Network> = out
            .iter()
            .copied()
            .filter(|n| n.info.cidr.contains(&p))
            .collect();
        if inside.is_empty() {
            let field = match family {
                Family::V4 => format!("{path}.preferred_ip"),
                Family::V6 => format!("{path}.preferred_ip6"),
            };
            return Err(IpamError::invalid(
                field,
                format!(
                    "{p} is not inside any of the candidate subnets ({})",
                    out.iter()
                        .map(|n| net_label(n))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        out = inside;
    }
    Ok(Some(out.into_iter().map(|n| n.id.clone()).collect()))
}

pub(super) fn describe_ids(nets: &[Network], ids: &[NetworkId]) -> String {
    ids.iter()
        .map(|id| match nets.iter().find(|n| &n.id == id) {
            Some(n) => net_label(n),
            None => id.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Says how giving back what this call took went, for the error message.
pub(super) fn roll_back_note(rollback: &Rollback) -> String {
    if rollback.taken.is_empty() {
        return "nothing was allocated".to_owned();
    }
    let what: Vec<String> = rollback
        .taken
        .iter()
        .map(|a| a.address.to_string())
        .collect();
    if rollback.failures.is_empty() {
        format!("released {} taken earlier in this call", what.join(", "))
    } else {
        format!(
            "rolling back {} left {} in place: {}",
            what.join(", "),
            rollback.failures.len(),
            rollback.failures.join("; ")
        )
    }
}

pub(super) fn family_label(f: Family) -> &'static str {
    match f {
        Family::V4 => "IPv4 address",
        Family::V6 => "IPv6 address",
    }
}

// ----------------------------------------------------------------------------------------------
// GetIpamRecord

pub(super) async fn get_ipam_record(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> AviResult {
    const F: &str = "GetIpamRecord";
    let body = parse_body(F, &body)?;
    check_backend(F, &body, &caller)?;
    let r = record_info(&body, "record_info").map_err(core(F))?;
    let id = required_id(F, &r, "record_info")?;
    let owner = owner_of(&id).map_err(core(F))?;
    let held = existing_record(F, &state, &caller, &id, &owner).await?;
    let info = alloc_info(&state, &caller, &held)
        .await
        .map_err(|e| AviError::from_core(F, e).with_context(format!("record '{id}'")))?;
    answer(info)
}

pub(super) async fn delete_ipam_record(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> AviResult {
    const F: &str = "DeleteIpamRecord";
    let body = parse_body(F, &body)?;
    check_backend(F, &body, &caller)?;
    let r = record_info(&body, "record_info").map_err(core(F))?;
    let id = required_id(F, &r, "record_info")?;
    let owner = owner_of(&id).map_err(core(F))?;
    let held = existing_record(F, &state, &caller, &id, &owner).await?;
    for a in &held {
        // Every name the address had loses the records pointing at it.
        let names = held_names(&id, a, &r.fqdns);
        state
            .ipam
            .release_with_aliases(&caller, &a.network_id, a.address, &names)
            .await
            .map_err(|e| {
                AviError::from_core(F, e)
                    .with_context(format!("record '{id}': releasing {}", a.address))
            })?;
    }
    tracing::info!(record = %id, released = held.len(), "Avi record deleted");
    answer(true)
}
