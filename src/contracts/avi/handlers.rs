//! The six Avi custom IPAM functions, each from the function's arguments to what it returns.

use std::net::IpAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::dto::{
    AllocInfo, AllocationType, NetworkEntry, RecordInfo, allocation_type, record_info,
};
use super::errors::{AviError, AviException, core};
use crate::contracts::input::Field;
use crate::domain::{
    Allocation, Family, IpamError, Lookup, Network, NetworkId, Owner, RecordChanges, RecordDetails,
};
use crate::service::{AllocationRequest, Batch, BatchMode, Caller, Rollback};
use crate::state::AppState;

/// What a function returns, serialised straight from its struct so the keys keep their order
/// (`serde_json::Value` objects would sort them; Avi's validator reads list entries by order).
type AviResult = Result<Response, AviError>;

fn answer<T: serde::Serialize>(value: T) -> AviResult {
    Ok(Json(value).into_response())
}

/// Joins the two halves of a dual-stack network id (gateway ids never contain it).
pub const PAIR_SEPARATOR: char = '+';

fn parse_body(function: &'static str, body: &[u8]) -> Result<Value, AviError> {
    let invalid = |why: String| AviError::from_core(function, IpamError::invalid("body", why));
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid(
            "the function's arguments (a JSON object) are required".into(),
        ));
    }
    let v: Value =
        serde_json::from_slice(body).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(invalid(
            "the function's arguments must be a JSON object".into(),
        ));
    }
    Ok(v)
}

/// `auth_params.backend`, when given, must be the backend the client is bound to.
fn check_backend(function: &'static str, body: &Value, caller: &Caller) -> Result<(), AviError> {
    let root = Field::root(body).map_err(core(function))?;
    let field = root.get("auth_params").get("backend");
    let wanted = field.opt_str().map_err(core(function))?;
    if let Some(b) = wanted
        && b != caller.backend
    {
        return Err(AviError::from_core(
            function,
            IpamError::invalid(
                field.path(),
                format!(
                    "the script parameter 'backend' is '{b}', but client '{}' is bound to backend '{}'",
                    caller.name, caller.backend
                ),
            ),
        ));
    }
    Ok(())
}

/// Owner text for a vsvip: `avi:<id>`, hashed when the id is too long or unprintable.
pub fn owner_of(id: &str) -> Result<Owner, IpamError> {
    Owner::parse(&Owner::namespaced("avi", id, 200))
        .map_err(|why| IpamError::invalid("record_info.id", why))
}

fn required_id(function: &'static str, r: &RecordInfo, path: &str) -> Result<String, AviError> {
    r.id.clone().ok_or_else(|| {
        AviError::from_core(
            function,
            IpamError::invalid(
                format!("{path}.id"),
                "is required: the vsvip uuid names the record",
            ),
        )
    })
}

fn description(id: &str, fqdns: &[String]) -> String {
    if fqdns.is_empty() {
        format!("Avi VS VIP {id}")
    } else {
        format!("Avi VS VIP {id} ({})", fqdns.join(", "))
    }
}

/// The fqdns a record's description lists ([`description`]); on a backend that shortens
/// descriptions (phpIPAM keeps 64 characters) the list may be cut, and a cut last name is left
/// out. Avi sends the names again where it matters (`record_info.fqdns` on Delete,
/// `old_record_info.fqdns` on Update); these are for when it does not.
fn described_fqdns(id: &str, description: Option<&str>) -> Vec<String> {
    let Some(rest) = description.and_then(|d| d.strip_prefix(&format!("Avi VS VIP {id} ("))) else {
        return Vec::new();
    };
    let (list, whole) = match rest.strip_suffix(')') {
        Some(list) => (list, true),
        None => (rest, false),
    };
    let mut names: Vec<String> = list.split(", ").map(str::to_owned).collect();
    if !whole {
        names.pop();
    }
    names
}

/// The names a held address of record `id` had: its host name, the fqdns of `old` (what Avi
/// says the record had), and those its description lists; in that order, once each.
fn held_names(id: &str, a: &Allocation, old: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let described = described_fqdns(id, a.description.as_deref());
    for n in a.hostname.iter().chain(old).chain(described.iter()) {
        let n = n.trim().trim_end_matches('.').to_ascii_lowercase();
        if !n.is_empty() && !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

fn details(id: &str, r: &RecordInfo) -> RecordDetails {
    RecordDetails {
        hostname: r.hostname(),
        description: Some(description(id, &r.fqdns)),
        mac: None,
    }
}

fn net_label(n: &Network) -> String {
    format!("{} ({})", n.info.cidr, n.info.name)
}

// ----------------------------------------------------------------------------------------------
// TestLogin

pub async fn test_login(State(state): State<AppState>, caller: Caller, body: Bytes) -> AviResult {
    const F: &str = "TestLogin";
    // The script sends `{"auth_params": {...}}`; an empty body is fine here.
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        parse_body(F, &body)?
    };
    check_backend(F, &body, &caller)?;
    let status = state.ipam.check(&caller.backend).await.map_err(|e| {
        AviError::from_core(F, e).with_context(format!("backend '{}'", caller.backend))
    })?;
    tracing::info!(client = %caller.name, backend = %status.backend, networks = status.networks,
        "Avi TestLogin passed");
    answer(true)
}

// ----------------------------------------------------------------------------------------------
// GetAvailableNetworksAndSubnets

fn count(n: &Network) -> Option<String> {
    n.info.free.map(|f| f.to_string())
}

fn single(n: &Network) -> NetworkEntry {
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
pub fn entries(nets: &[Network], ip_type: AllocationType) -> Vec<NetworkEntry> {
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

pub async fn get_available_networks_and_subnets(
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

// ----------------------------------------------------------------------------------------------
// Records

/// The record an owner's holdings make: one address per family (the first by network id and
/// address if an interrupted update left two), `network` from the networks they came from.
async fn alloc_info(
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
async fn held_by(
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
async fn existing_record(
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
fn candidates(
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

fn describe_ids(nets: &[Network], ids: &[NetworkId]) -> String {
    ids.iter()
        .map(|id| match nets.iter().find(|n| &n.id == id) {
            Some(n) => net_label(n),
            None => id.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Says how giving back what this call took went, for the error message.
fn roll_back_note(rollback: &Rollback) -> String {
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

fn family_label(f: Family) -> &'static str {
    match f {
        Family::V4 => "IPv4 address",
        Family::V6 => "IPv6 address",
    }
}

// ----------------------------------------------------------------------------------------------
// GetIpamRecord

pub async fn get_ipam_record(
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

// ----------------------------------------------------------------------------------------------
// CreateIpamRecord

pub async fn create_ipam_record(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> AviResult {
    const F: &str = "CreateIpamRecord";
    let body = parse_body(F, &body)?;
    check_backend(F, &body, &caller)?;
    let r = record_info(&body, "record_info").map_err(core(F))?;
    let id = required_id(F, &r, "record_info")?;
    let ctx = || format!("record '{id}'");
    let owner = owner_of(&id).map_err(core(F))?;
    let kind = r.allocation_type.unwrap_or(AllocationType::V4Only);
    let nets: Arc<Vec<Network>> = state
        .ipam
        .network_snapshot(&caller)
        .await
        .map_err(|e| AviError::from_core(F, e).with_context(ctx()))?;
    let held = held_by(F, &state, &caller, &id, &owner).await?;

    // Plan every family before taking anything.
    let mut plan: Vec<(Family, Vec<NetworkId>)> = Vec::new();
    for &family in kind.families() {
        if let Some(h) = held.iter().find(|a| Family::of_addr(&a.address) == family) {
            // Avi retries a create it did not hear back from: the record already holds this.
            if let Some(p) = r.preferred(family)
                && p != h.address
            {
                return Err(AviError::new(
                    F,
                    AviException::General,
                    IpamError::Conflict(format!(
                        "the record already holds {} in {}, not the preferred {p}; \
                         change it with UpdateIpamRecord",
                        h.address, h.network_id
                    )),
                )
                .with_context(ctx()));
            }
            continue;
        }
        let ids = candidates(&nets, &r, family, "record_info", false)
            .map_err(|e| AviError::from_core(F, e).with_context(ctx()))?
            .unwrap_or_default();
        plan.push((family, ids));
    }
    // Every fqdn gets the addresses' records: a name DNS cannot take is refused here, naming
    // `record_info.fqdns[k]`, before any address is taken.
    let candidates: Vec<NetworkId> = plan.iter().flat_map(|(_, ids)| ids.clone()).collect();
    state
        .ipam
        .check_names(&caller, &candidates, &r.named_fqdns())
        .await
        .map_err(|e| AviError::from_core(F, e).with_context(ctx()))?;
    let aliases = r.aliases();

    let mut batch = Batch::new(BatchMode::InOrder);
    for (family, ids) in &plan {
        batch.push(AllocationRequest {
            owner: owner.clone(),
            networks: ids.clone(),
            address: r.preferred(*family),
            details: details(&id, &r),
            aliases: aliases.clone(),
        });
    }
    let taken = match state.ipam.run_batch(&caller, &batch).await {
        Ok(t) => t,
        Err(f) => {
            let what = match plan.get(f.index) {
                Some((family, ids)) => format!(
                    "{}: {} from {}",
                    ctx(),
                    family_label(*family),
                    describe_ids(&nets, ids)
                ),
                None => ctx(),
            };
            return Err(AviError::from_core(F, f.error)
                .with_context(what)
                .with_note(roll_back_note(&f.rollback)));
        }
    };
    let mut all = held;
    all.extend(taken.allocations().iter().cloned());
    match alloc_info(&state, &caller, &all).await {
        Ok(info) => {
            tracing::info!(record = %id, owner = %owner, v4 = ?info.v4_ip, v6 = ?info.v6_ip,
                "Avi record created");
            answer(info)
        }
        Err(e) => {
            let note = roll_back_note(&state.ipam.roll_back(&caller, taken).await);
            Err(AviError::from_core(F, e)
                .with_context(ctx())
                .with_note(note))
        }
    }
}

// ----------------------------------------------------------------------------------------------
// DeleteIpamRecord

pub async fn delete_ipam_record(
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

// ----------------------------------------------------------------------------------------------
// UpdateIpamRecord

/// What happens to one family of a record.
enum Step {
    /// Keep this address (maybe with a new hostname) and release the others of its family.
    Keep(Allocation, Vec<Allocation>),
    /// Take a new address from these networks, then release these.
    Take(Vec<NetworkId>, Option<IpAddr>, Vec<Allocation>),
    /// Release these (the family is no longer wanted).
    Drop(Vec<Allocation>),
}

fn plan_family(
    nets: &[Network],
    new: &RecordInfo,
    family: Family,
    wanted: bool,
    held: Vec<Allocation>,
) -> Result<Step, IpamError> {
    const P: &str = "new_record_info";
    if !wanted {
        return Ok(Step::Drop(held));
    }
    let constraint = candidates(nets, new, family, P, true)?;
    let preferred = new.preferred(family);
    let keep = held.iter().position(|a| match (preferred, &constraint) {
        (Some(p), _) => a.address == p,
        (None, Some(ids)) => ids.contains(&a.network_id),
        (None, None) => true,
    });
    match keep {
        Some(k) => {
            let mut rest = held;
            let kept = rest.remove(k);
            Ok(Step::Keep(kept, rest))
        }
        None => {
            let ids = match constraint {
                Some(ids) => ids,
                None => candidates(nets, new, family, P, false)?.unwrap_or_default(),
            };
            Ok(Step::Take(ids, preferred, held))
        }
    }
}

pub async fn update_ipam_record(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> AviResult {
    const F: &str = "UpdateIpamRecord";
    let body = parse_body(F, &body)?;
    check_backend(F, &body, &caller)?;
    let new = record_info(&body, "new_record_info").map_err(core(F))?;
    let old = match body.get("old_record_info").filter(|v| !v.is_null()) {
        Some(_) => Some(record_info(&body, "old_record_info").map_err(core(F))?),
        None => None,
    };
    let old_id = old.as_ref().and_then(|o| o.id.clone());
    let id = match (&new.id, &old_id) {
        (Some(n), Some(o)) if n != o => {
            return Err(AviError::new(
                F,
                AviException::NotImplemented,
                IpamError::Unsupported(format!(
                    "changing the record id ('{o}' to '{n}') is not supported: delete the record and create a new one"
                )),
            ));
        }
        (Some(n), _) => n.clone(),
        (None, Some(o)) => o.clone(),
        (None, None) => {
            return Err(AviError::from_core(
                F,
                IpamError::invalid(
                    "new_record_info.id",
                    "is required: the vsvip uuid names the record",
                ),
            ));
        }
    };
    let ctx = || format!("record '{id}'");
    let owner = owner_of(&id).map_err(core(F))?;
    let held = existing_record(F, &state, &caller, &id, &owner).await?;
    let nets: Arc<Vec<Network>> = state
        .ipam
        .network_snapshot(&caller)
        .await
        .map_err(|e| AviError::from_core(F, e).with_context(ctx()))?;
    let kind = match new.allocation_type {
        Some(k) => k,
        None => AllocationType::from_families(
            held.iter().any(|a| a.address.is_ipv4()),
            held.iter().any(|a| a.address.is_ipv6()),
        )
        .unwrap_or(AllocationType::V4Only),
    };

    // Plan both families before changing anything.
    let mut steps = Vec::new();
    for family in [Family::V4, Family::V6] {
        let mine: Vec<Allocation> = held
            .iter()
            .filter(|a| Family::of_addr(&a.address) == family)
            .cloned()
            .collect();
        let wanted = kind.families().contains(&family);
        if !wanted && mine.is_empty() {
            continue;
        }
        let step = plan_family(&nets, &new, family, wanted, mine)
            .map_err(|e| AviError::from_core(F, e).with_context(ctx()))?;
        steps.push((family, step));
    }

    // Every new fqdn gets the addresses' records: a name DNS cannot take is refused here,
    // naming `new_record_info.fqdns[k]`, before anything changes.
    let name_networks: Vec<NetworkId> = steps
        .iter()
        .flat_map(|(_, step)| match step {
            Step::Keep(a, _) => vec![a.network_id.clone()],
            Step::Take(ids, _, _) => ids.clone(),
            Step::Drop(_) => Vec::new(),
        })
        .collect();
    state
        .ipam
        .check_names(&caller, &name_networks, &new.named_fqdns())
        .await
        .map_err(|e| AviError::from_core(F, e).with_context(ctx()))?;
    let aliases = new.aliases();
    let old_fqdns: Vec<String> = old.as_ref().map(|o| o.fqdns.clone()).unwrap_or_default();

    // Take first: a failure leaves the record as it was.
    let new_details = details(&id, &new);
    // What the record holds after the change, in family order: kept as it is, or the batch
    // item that takes its new address.
    enum Slot {
        Kept(Allocation),
        New(usize),
    }
    let mut slots: Vec<Slot> = Vec::new();
    let mut release: Vec<Allocation> = Vec::new();
    let mut batch = Batch::new(BatchMode::Another);
    let mut wanted: Vec<(Family, Vec<NetworkId>)> = Vec::new();
    for (family, step) in steps {
        match step {
            Step::Keep(a, rest) => {
                release.extend(rest);
                slots.push(Slot::Kept(a));
            }
            Step::Drop(all) => release.extend(all),
            Step::Take(ids, address, old) => {
                let index = batch.push(AllocationRequest {
                    owner: owner.clone(),
                    networks: ids.clone(),
                    address,
                    details: new_details.clone(),
                    aliases: aliases.clone(),
                });
                wanted.push((family, ids));
                slots.push(Slot::New(index));
                release.extend(old);
            }
        }
    }
    let taken = match state.ipam.run_batch(&caller, &batch).await {
        Ok(t) => t,
        Err(f) => {
            let what = match wanted.get(f.index) {
                Some((family, ids)) => format!(
                    "{}: new {} from {}",
                    ctx(),
                    family_label(*family),
                    describe_ids(&nets, ids)
                ),
                None => ctx(),
            };
            let note = roll_back_note(&f.rollback);
            return Err(AviError::from_core(F, f.error)
                .with_context(what)
                .with_note(format!("{note}; the record is unchanged")));
        }
    };
    let mut result: Vec<Allocation> = Vec::with_capacity(slots.len());
    for slot in slots {
        match slot {
            Slot::Kept(a) => result.push(a),
            Slot::New(i) => result.extend(taken.allocations().get(i).cloned()),
        }
    }

    // fqdn changes on the addresses that stay.
    for a in result.iter_mut() {
        if taken.allocations().iter().any(|t| t.id == a.id) {
            continue;
        }
        let hostname = new_details.hostname.clone().unwrap_or_default();
        let changes = RecordChanges {
            hostname: (a.hostname.clone().unwrap_or_default() != hostname).then_some(hostname),
            description: (a.description != new_details.description)
                .then(|| new_details.description.clone())
                .flatten(),
            mac: None,
        };
        // The names it had (host name, old fqdns, described ones) against the new fqdns: the
        // names that leave lose this address's records, the new ones get them.
        let had = held_names(&id, a, &old_fqdns);
        if changes == RecordChanges::default() && had == new.fqdns {
            continue;
        }
        match state
            .ipam
            .update_with_aliases(&caller, &a.network_id, a.address, &changes, &had, &aliases)
            .await
        {
            Ok(updated) => *a = updated,
            Err(e) => {
                let note = roll_back_note(&state.ipam.roll_back(&caller, taken).await);
                return Err(AviError::from_core(F, e)
                    .with_context(format!("{}: new fqdns on {}", ctx(), a.address))
                    .with_note(format!("{note}; the record is otherwise unchanged")));
            }
        }
    }

    // Then give back what the record no longer holds.
    for a in &release {
        let names = held_names(&id, a, &old_fqdns);
        if let Err(e) = state
            .ipam
            .release_with_aliases(&caller, &a.network_id, a.address, &names)
            .await
        {
            return Err(AviError::from_core(F, e).with_context(format!(
                "{}: releasing the replaced {} (the new addresses are in place; retrying the \
                 update releases it)",
                ctx(),
                a.address
            )));
        }
    }

    let info = alloc_info(&state, &caller, &result)
        .await
        .map_err(|e| AviError::from_core(F, e).with_context(ctx()))?;
    tracing::info!(record = %id, allocation_type = kind.as_str(), took = taken.allocations().len(),
        released = release.len(), "Avi record updated");
    answer(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_ids_are_hashed_into_a_valid_owner() {
        assert_eq!(owner_of("vsvip-1").expect("owner").as_str(), "avi:vsvip-1");
        let long = "x".repeat(400);
        let o = owner_of(&long).expect("owner");
        assert!(o.as_str().starts_with("avi:sha256-"), "{o}");
        assert_eq!(owner_of(&long).expect("owner"), o, "stable");
    }
}
