//! The eight vRA IPAM operations, each from the action's `inputs` to the dict it must return.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{Value, json};

use super::dto::{
    AllocationResult, DeallocationResult, IpBlock, IpRange, IpRangeOut, endpoint, ip_version,
};
use super::errors::{VraError, op};
use super::{Listing, PagedSnapshot, VraState};
use crate::contracts::input::Field;
use crate::domain::{
    Allocation, Block, IpamError, Lookup, Mac, Network, NetworkId, Owner, RecordChanges,
    RecordDetails,
};
use crate::service::{AllocationRequest, Batch, BatchMode, Caller, Rollback};
use crate::state::AppState;

type VraResult = Result<Json<Value>, VraError>;

/// Most addresses one `IpAllocation` may ask for (`size`).
pub const MAX_SIZE: u64 = 256;

fn parse_body(operation: &'static str, body: &[u8]) -> Result<Value, VraError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(VraError::new(
            operation,
            IpamError::invalid("body", "the action inputs (a JSON object) are required"),
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        VraError::new(
            operation,
            IpamError::invalid("body", format!("not valid JSON: {e}")),
        )
    })
}

fn parse_ip(field: &str, text: &str) -> Result<IpAddr, IpamError> {
    text.trim()
        .parse()
        .map_err(|_| IpamError::invalid(field, format!("'{text}' is not an IP address")))
}

fn parse_id(field: &str, text: &str, what: &str, source: &str) -> Result<NetworkId, IpamError> {
    NetworkId::parse(text).ok_or_else(|| {
        IpamError::invalid(
            field,
            format!("'{text}' is not {what} id from this gateway (ids come from {source})"),
        )
    })
}

// ----------------------------------------------------------------------------------------------
// Endpoint options

/// Which networks and blocks an endpoint sees: the endpoint form's `addressSpace` and
/// `tagFilter` (`key=value, key=value`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscoveryFilter {
    pub address_space: Option<String>,
    pub tags: BTreeMap<String, String>,
}

impl DiscoveryFilter {
    fn matches_network(&self, n: &Network) -> bool {
        if let Some(space) = &self.address_space
            && &n.info.address_space != space
        {
            return false;
        }
        self.tags
            .iter()
            .all(|(k, v)| n.info.tags.iter().any(|t| &t.key == k && &t.value == v))
    }

    fn matches_block(&self, b: &Block) -> bool {
        if let Some(space) = &self.address_space
            && &b.info.address_space != space
        {
            return false;
        }
        self.tags
            .iter()
            .all(|(k, v)| b.info.tags.iter().any(|t| &t.key == k && &t.value == v))
    }
}

/// The gateway options of the endpoint form (`endpointProperties`), checked against the caller.
#[derive(Debug, Clone, Default)]
pub struct EndpointOptions {
    pub backend: Option<String>,
    pub filter: DiscoveryFilter,
}

fn endpoint_options(root: &Field<'_>, caller: &Caller) -> Result<EndpointOptions, IpamError> {
    let props = endpoint(root).get("endpointProperties");
    let backend = props.get("backend").opt_str()?;
    if let Some(b) = &backend
        && b != &caller.backend
    {
        return Err(IpamError::invalid(
            props.get("backend").path(),
            format!(
                "this endpoint names backend '{b}', but client '{}' is bound to backend '{}'",
                caller.name, caller.backend
            ),
        ));
    }
    let address_space = props.get("addressSpace").opt_str()?;
    let mut tags = BTreeMap::new();
    let tag_field = props.get("tagFilter");
    if let Some(text) = tag_field.opt_str()? {
        for part in text
            .split([',', ';'])
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                IpamError::invalid(
                    tag_field.path(),
                    format!("'{part}' is not key=value (e.g. env=lab, tier=servers)"),
                )
            })?;
            tags.insert(k.trim().to_owned(), v.trim().to_owned());
        }
    }
    Ok(EndpointOptions {
        backend,
        filter: DiscoveryFilter {
            address_space,
            tags,
        },
    })
}

/// Owner text for a vRA resource: `vra:<resourceInfo.id>`, hashed when the id is too long (or
/// unprintable) to be stored as an owner: 180 bytes leave room for the `/nic<k>/<n>` suffixes
/// within [`crate::domain::OWNER_MAX_LEN`].
fn owner_base(resource_id: &str) -> String {
    Owner::namespaced("vra", resource_id, 180)
}

fn owner(field: &str, text: String) -> Result<Owner, IpamError> {
    Owner::parse(&text).map_err(|why| IpamError::invalid(field, why))
}

/// Whether an allocation's owner belongs to the vRA resource `base` (`vra:<id>`).
fn owned_by(a: &Allocation, base: &str) -> bool {
    a.owner.as_ref().is_some_and(|o| {
        o.as_str()
            .strip_prefix(base)
            .is_some_and(|r| r.starts_with('/'))
    })
}

// ----------------------------------------------------------------------------------------------
// Validate Endpoint

pub async fn validate_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> VraResult {
    const OP: &str = "validate-endpoint";
    let body = parse_body(OP, &body)?;
    let root = Field::root(&body).map_err(op(OP))?;
    let options = endpoint_options(&root, &caller).map_err(op(OP))?;
    let status =
        state.ipam.check(&caller.backend).await.map_err(|e| {
            VraError::new(OP, e).with_context(format!("backend '{}'", caller.backend))
        })?;
    let mut detail = format!(
        "backend '{}' ({}) reachable, {} network(s), {} block(s)",
        status.backend, status.kind, status.networks, status.blocks
    );
    if !status.unchecked.is_empty() {
        detail.push_str(&format!("; not checked: {}", status.unchecked.join("; ")));
    }
    if options.filter != DiscoveryFilter::default() {
        let snapshot = state.ipam.network_snapshot(&caller).await.map_err(op(OP))?;
        let seen = snapshot
            .iter()
            .filter(|n| options.filter.matches_network(n))
            .count();
        detail.push_str(&format!("; {seen} network(s) match this endpoint's filter"));
    }
    tracing::info!(client = %caller.name, backend = %caller.backend, "vRA endpoint validated");
    Ok(Json(json!({
        "message": format!("Validated successfully: {detail}"),
        "statusCode": "200",
    })))
}

// ----------------------------------------------------------------------------------------------
// Get IP Ranges / Get IP Blocks: paging over a frozen snapshot

struct Paging {
    max: Option<usize>,
    token: Option<PageToken>,
}

/// `<snapshot id>.<offset>.<kind><base64url(last id served)>`. The snapshot id finds the frozen
/// listing on the replica that served the first page; on any other replica (or once it expired)
/// the last id continues the walk over a fresh listing sorted by id: no duplicates, no gaps for
/// the networks present throughout, and no state shared between replicas.
struct PageToken {
    id: String,
    offset: usize,
    /// `r` for ranges, `b` for blocks, and the last id of the previous page.
    after: Option<(char, String)>,
}

fn paging(root: &Field<'_>) -> Result<Paging, IpamError> {
    let p = root.get("pagingAndSorting");
    let max = p
        .get("maxResults")
        .opt_u64()?
        .filter(|m| *m > 0)
        .map(|m| usize::try_from(m).unwrap_or(usize::MAX));
    let token_field = p.get("pageToken");
    let token = match token_field.opt_str()? {
        None => None,
        Some(t) => {
            let bad = || {
                IpamError::invalid(
                    token_field.path(),
                    format!("'{t}' is not a page token issued by this gateway"),
                )
            };
            let mut parts = t.splitn(3, '.');
            let id = parts.next().unwrap_or_default();
            let offset: usize = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(bad());
            }
            let after = match parts.next() {
                None => None,
                Some(rest) => {
                    let mut chars = rest.chars();
                    let kind = chars.next().filter(|k| *k == 'r' || *k == 'b');
                    let last = URL_SAFE_NO_PAD
                        .decode(chars.as_str())
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok());
                    match (kind, last) {
                        (Some(k), Some(l)) => Some((k, l)),
                        _ => return Err(bad()),
                    }
                }
            };
            Some(PageToken {
                id: id.to_owned(),
                offset,
                after,
            })
        }
    };
    Ok(Paging { max, token })
}

fn caller_key(caller: &Caller) -> String {
    format!("{}|{}", caller.backend, caller.name)
}

/// Where a page starts in its (id-sorted) listing.
enum Start {
    Offset(usize),
    After(String),
}

/// Resolves the snapshot and start of a page: a fresh one for the first page; the frozen one
/// named by the token for the next ones when this replica has it, else a fresh one continued
/// after the token's last id.
async fn page_source(
    vra: &VraState,
    caller: &Caller,
    paging: &Paging,
    kind: &'static str,
    fresh: impl std::future::Future<Output = Result<PagedSnapshot, IpamError>>,
) -> Result<(String, Arc<PagedSnapshot>, Start), IpamError> {
    let new_id = || uuid::Uuid::new_v4().simple().to_string();
    let Some(token) = &paging.token else {
        return Ok((new_id(), Arc::new(fresh.await?), Start::Offset(0)));
    };
    let refused = |why: &str| IpamError::invalid("pagingAndSorting.pageToken", why.to_owned());
    let kind_letter = if kind == "ranges" { 'r' } else { 'b' };
    if let Some((k, _)) = &token.after
        && *k != kind_letter
    {
        return Err(refused(&format!(
            "this token belongs to another listing than {kind}"
        )));
    }
    if let Some(snap) = vra.pages.get(&token.id).await {
        let same_kind = matches!(
            (&snap.listing, kind),
            (Listing::Ranges(_), "ranges") | (Listing::Blocks(_), "blocks")
        );
        if snap.caller == caller_key(caller) && same_kind {
            return Ok((token.id.clone(), snap, Start::Offset(token.offset)));
        }
        return Err(refused("this token belongs to another caller or listing"));
    }
    match &token.after {
        Some((_, last)) => Ok((new_id(), Arc::new(fresh.await?), Start::After(last.clone()))),
        None => Err(refused(
            "unknown or expired page token; the next collection starts from the first page again",
        )),
    }
}

/// Cuts one page out of `items` (sorted by `key`) and issues the token for the next one.
async fn cut_page<T: Clone>(
    vra: &VraState,
    id: String,
    snap: Arc<PagedSnapshot>,
    items: Vec<T>,
    start: Start,
    max: Option<usize>,
    key: impl Fn(&T) -> String,
) -> Result<(Vec<T>, Option<String>), IpamError> {
    let offset = match start {
        Start::Offset(o) => o,
        Start::After(last) => items.partition_point(|t| key(t) <= last),
    };
    if offset > items.len() {
        return Err(IpamError::invalid(
            "pagingAndSorting.pageToken",
            format!(
                "the token points past the end of its listing ({} item(s))",
                items.len()
            ),
        ));
    }
    let end = match max {
        Some(m) => offset.saturating_add(m).min(items.len()),
        None => items.len(),
    };
    let page = items[offset..end].to_vec();
    let next = match page.last() {
        Some(last) if end < items.len() => {
            let kind = match snap.listing {
                Listing::Ranges(_) => 'r',
                Listing::Blocks(_) => 'b',
            };
            vra.pages.insert(id.clone(), snap).await;
            Some(format!(
                "{id}.{end}.{kind}{}",
                URL_SAFE_NO_PAD.encode(key(last))
            ))
        }
        _ => None,
    };
    Ok((page, next))
}

pub async fn get_ip_ranges(
    State(state): State<AppState>,
    caller: Caller,
    Extension(vra): Extension<VraState>,
    body: Bytes,
) -> Result<Response, VraError> {
    const OP: &str = "get-ip-ranges";
    let body = parse_body(OP, &body)?;
    let root = Field::root(&body).map_err(op(OP))?;
    let options = endpoint_options(&root, &caller).map_err(op(OP))?;
    let paging = paging(&root).map_err(op(OP))?;
    let ipam = state.ipam.clone();
    let fresh = async {
        Ok(PagedSnapshot {
            caller: caller_key(&caller),
            listing: Listing::Ranges(ipam.network_snapshot(&caller).await?),
            filter: options.filter.clone(),
        })
    };
    let (id, snap, start) = page_source(&vra, &caller, &paging, "ranges", fresh)
        .await
        .map_err(op(OP))?;
    // Page over references into the snapshot and convert only the page: a page of 1,000 out of
    // 10,000 networks no longer builds 10,000 `IpRange`s nor a JSON tree of the page.
    let items: Vec<&Network> = match &snap.listing {
        Listing::Ranges(nets) => nets
            .iter()
            .filter(|n| snap.filter.matches_network(n))
            .collect(),
        Listing::Blocks(_) => Vec::new(),
    };
    let (page, next) = cut_page(&vra, id, snap.clone(), items, start, paging.max, |n| {
        n.id.to_string()
    })
    .await
    .map_err(op(OP))?;
    let hint = page.len().saturating_mul(RANGE_JSON_BYTES) + 256;
    let answer = RangesPage {
        ip_ranges: page.into_iter().map(IpRangeOut).collect(),
        next_page_token: next,
    };
    json_answer(OP, &answer, hint)
}

/// About what one range takes in JSON (445 KiB for 1,000 ranges with DNS, tags and properties).
const RANGE_JSON_BYTES: usize = 480;

/// Serialises an answer into one buffer sized up front. `Json` grows its buffer by doubling from
/// 128 bytes: for a listing of thousands of ranges the profile showed the time going to realloc,
/// copying and malloc consolidation rather than to encoding.
fn json_answer<T: serde::Serialize>(
    operation: &'static str,
    value: &T,
    hint: usize,
) -> Result<Response, VraError> {
    let mut buf = Vec::with_capacity(hint);
    serde_json::to_writer(&mut buf, value).map_err(|e| {
        VraError::new(
            operation,
            IpamError::Internal(format!("cannot encode the answer: {e}")),
        )
    })?;
    Ok((
        [(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        )],
        buf,
    )
        .into_response())
}

/// The answer of Get IP Ranges, serialised as it stands (no `serde_json::Value` in between).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RangesPage<'a> {
    /// Serialised straight from the snapshot: no `IpRange` per range (see [`IpRangeOut`]).
    ip_ranges: Vec<IpRangeOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

pub async fn get_ip_blocks(
    State(state): State<AppState>,
    caller: Caller,
    Extension(vra): Extension<VraState>,
    body: Bytes,
) -> VraResult {
    const OP: &str = "get-ip-blocks";
    let body = parse_body(OP, &body)?;
    let root = Field::root(&body).map_err(op(OP))?;
    let options = endpoint_options(&root, &caller).map_err(op(OP))?;
    let paging = paging(&root).map_err(op(OP))?;
    let ipam = state.ipam.clone();
    let fresh = async {
        // vRA runs Get IP Blocks even when on-demand networks are not used, and skips Get IP
        // Ranges when it fails: a backend without blocks answers an empty list, not an error.
        let blocks = match ipam.blocks(&caller).await {
            // Sorted by id: a page token may continue after the last id on another replica.
            Ok(mut b) => {
                b.sort_by(|x, y| x.id.cmp(&y.id));
                b
            }
            Err(IpamError::Unsupported(_)) => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(PagedSnapshot {
            caller: caller_key(&caller),
            listing: Listing::Blocks(Arc::new(blocks)),
            filter: options.filter.clone(),
        })
    };
    let (id, snap, start) = page_source(&vra, &caller, &paging, "blocks", fresh)
        .await
        .map_err(op(OP))?;
    let items: Vec<IpBlock> = match &snap.listing {
        Listing::Blocks(blocks) => blocks
            .iter()
            .filter(|b| snap.filter.matches_block(b))
            .map(IpBlock::from_block)
            .collect(),
        Listing::Ranges(_) => Vec::new(),
    };
    let (page, next) = cut_page(&vra, id, snap.clone(), items, start, paging.max, |b| {
        b.id.clone()
    })
    .await
    .map_err(op(OP))?;
    let mut out = json!({ "ipBlocks": page });
    if let Some(t) = next {
        out["nextPageToken"] = json!(t);
    }
    Ok(Json(out))
}

// ----------------------------------------------------------------------------------------------
// Allocate IP

/// One `IpAllocation`, checked before anything is taken.
#[derive(Debug)]
struct PlannedAllocation {
    index: usize,
    id: String,
    nic: u64,
    candidates: Vec<NetworkId>,
    start: Option<IpAddr>,
    /// One owner per address (`size` of them).
    owners: Vec<Owner>,
    details: RecordDetails,
}

impl PlannedAllocation {
    fn label(&self) -> String {
        format!(
            "ipAllocations[{}] (id \"{}\", NIC {})",
            self.index, self.id, self.nic
        )
    }
}

fn no_static_address(text: &str) -> bool {
    matches!(
        text.trim().to_ascii_lowercase().as_str(),
        "none" | "null" | "0.0.0.0" | "::"
    )
}

fn nth_address(field: &str, start: IpAddr, n: u64) -> Result<IpAddr, IpamError> {
    let overflow = || IpamError::invalid(field, format!("{start} + {n} is past the address space"));
    match start {
        IpAddr::V4(v4) => u32::from(v4)
            .checked_add(u32::try_from(n).map_err(|_| overflow())?)
            .map(|v| IpAddr::from(v.to_be_bytes()))
            .ok_or_else(overflow),
        IpAddr::V6(v6) => u128::from(v6)
            .checked_add(u128::from(n))
            .map(|v| IpAddr::from(v.to_be_bytes()))
            .ok_or_else(overflow),
    }
}

/// The machine's opt-out of DNS registration: `resourceInfo.properties["ipamgw.dns"]` =
/// `"false"` (a vRA custom property; `"true"` or absent registers the host name).
pub const DNS_OPT_OUT_PROPERTY: &str = "ipamgw.dns";

fn dns_wanted(root: &Field<'_>) -> Result<bool, IpamError> {
    let f = root
        .get("resourceInfo")
        .get("properties")
        .get(DNS_OPT_OUT_PROPERTY);
    match f.opt_str()?.as_deref().map(str::trim) {
        None => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(v) => Err(IpamError::invalid(
            f.path(),
            format!("'{v}' is neither \"true\" nor \"false\""),
        )),
    }
}

fn resource_hostname(resource: &Field<'_>) -> Result<Option<String>, IpamError> {
    for key in ["hostName", "hostname", "name"] {
        if let Some(h) = resource.get(key).opt_str()? {
            return Ok(Some(h));
        }
    }
    Ok(None)
}

fn plan_allocations(root: &Field<'_>) -> Result<(String, Vec<PlannedAllocation>), IpamError> {
    let resource = root.get("resourceInfo");
    let rid_field = resource.get("id");
    let rid = rid_field.opt_str()?.ok_or_else(|| {
        IpamError::invalid(
            rid_field.path(),
            "is required: it names the machine, so that a retried request gets the same addresses",
        )
    })?;
    let base = owner_base(&rid);
    let hostname = resource_hostname(&resource)?;
    let requested_by = resource.get("owner").opt_str()?;
    let resource_name = resource.get("name").opt_str()?;
    let list = root.get("ipAllocations");
    let items = list.items()?;
    if items.is_empty() {
        return Err(IpamError::invalid(
            list.path(),
            "at least one allocation is required",
        ));
    }
    let mut plans: Vec<PlannedAllocation> = Vec::with_capacity(items.len());
    let mut nic_seen: BTreeMap<u64, usize> = BTreeMap::new();
    for (k, item) in items.iter().enumerate() {
        if !item.is_object() {
            return Err(IpamError::invalid(
                format!("{}[{k}]", list.path()),
                "expected an object",
            ));
        }
        let id = item.get("id").req_str()?;
        if let Some(other) = plans.iter().find(|p| p.id == id) {
            return Err(IpamError::invalid(
                item.get("id").path(),
                format!(
                    "'{id}' is also the id of ipAllocations[{}]; results are matched by id",
                    other.index
                ),
            ));
        }
        let ranges_field = item.get("ipRangeIds");
        let range_texts = ranges_field.str_list()?;
        if range_texts.is_empty() {
            return Err(IpamError::invalid(
                ranges_field.path(),
                "at least one range id is required",
            ));
        }
        let candidates = range_texts
            .iter()
            .enumerate()
            .map(|(j, t)| {
                parse_id(
                    &format!("{}[{j}]", ranges_field.path()),
                    t,
                    "a range",
                    "Get IP Ranges",
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let nic = item.get("nicIndex").opt_u64()?.unwrap_or(k as u64);
        let size_field = item.get("size");
        let size = size_field.opt_u64()?.unwrap_or(1);
        if size == 0 || size > MAX_SIZE {
            return Err(IpamError::invalid(
                size_field.path(),
                format!("must be 1..{MAX_SIZE}, got {size}"),
            ));
        }
        let start_field = item.get("start");
        let start = match start_field.opt_str()? {
            Some(t) if !no_static_address(&t) => Some(parse_ip(start_field.path(), &t)?),
            _ => None,
        };
        if let Some(s) = start {
            nth_address(start_field.path(), s, size - 1)?;
        }
        // Two allocations for one NIC (dual stack) get distinct owners, stable across retries.
        let seen = nic_seen.entry(nic).or_insert(0);
        let nic_key = if *seen == 0 {
            format!("nic{nic}")
        } else {
            format!("nic{nic}.{seen}")
        };
        *seen += 1;
        let owners = (0..size)
            .map(|i| {
                let text = if size == 1 {
                    format!("{base}/{nic_key}")
                } else {
                    format!("{base}/{nic_key}/{i}")
                };
                owner(rid_field.path(), text)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut description = format!(
            "vRA {} NIC {nic}",
            resource_name.as_deref().unwrap_or(rid.as_str())
        );
        if let Some(by) = &requested_by {
            description.push_str(&format!(", requested by {by}"));
        }
        if let Some(d) = item.get("description").opt_str()? {
            description.push_str(&format!(": {d}"));
        }
        plans.push(PlannedAllocation {
            index: k,
            id,
            nic,
            candidates,
            start,
            owners,
            details: RecordDetails {
                hostname: hostname.clone(),
                description: Some(description),
                mac: None,
            },
        });
    }
    Ok((rid, plans))
}

/// Names ranges for messages: `lab-tiny (local.ZGVm…)`.
async fn range_names(state: &AppState, caller: &Caller, ids: &[NetworkId]) -> String {
    let snapshot = state.ipam.network_snapshot(caller).await.ok();
    ids.iter()
        .map(|id| {
            match snapshot
                .as_ref()
                .and_then(|s| s.iter().find(|n| &n.id == id))
            {
                Some(n) => format!("{} ({}, {id})", n.info.name, n.info.cidr),
                None => id.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn allocate_ip(State(state): State<AppState>, caller: Caller, body: Bytes) -> VraResult {
    const OP: &str = "allocate-ip";
    let body = parse_body(OP, &body)?;
    let root = Field::root(&body).map_err(op(OP))?;
    endpoint_options(&root, &caller).map_err(op(OP))?;
    let (rid, plans) = plan_allocations(&root).map_err(op(OP))?;
    let ipam = &state.ipam;
    let register_dns = dns_wanted(&root).map_err(op(OP))?;
    // The core names a bad host name `hostname`; vRA's field is the resourceInfo key it came from.
    let resource = root.get("resourceInfo");
    let hostname_field = ["hostName", "hostname", "name"]
        .into_iter()
        .map(|k| resource.get(k))
        .find(Field::is_present)
        .map_or_else(|| "resourceInfo.name".to_owned(), |f| f.path().to_owned());

    // Every address of one IpAllocation comes from one range (contract p.14): one batch group
    // per plan. An owner that already holds an address in a candidate gets that one back
    // (`HeldFirst`: one owner lookup, then the candidates in order).
    let mut batch = Batch::new(BatchMode::HeldFirst { register_dns });
    // Item index → (plan, address number within the plan).
    let mut items: Vec<(&PlannedAllocation, usize)> = Vec::new();
    for (p, plan) in plans.iter().enumerate() {
        for (i, owner) in plan.owners.iter().enumerate() {
            let address = plan
                .start
                .map(|s| nth_address("start", s, i as u64))
                .transpose()
                .map_err(op(OP))?;
            batch.push_grouped(
                p,
                AllocationRequest {
                    owner: owner.clone(),
                    networks: plan.candidates.clone(),
                    address,
                    details: plan.details.clone(),
                    aliases: Vec::new(),
                },
            );
            items.push((plan, i));
        }
    }
    let taken = match ipam.run_batch(&caller, &batch).await {
        Ok(t) => t,
        Err(f) => {
            let Some(&(plan, i)) = items.get(f.index) else {
                return Err(VraError::new(OP, f.error).with_note(roll_back_note(&f.rollback)));
            };
            // The core names the specific address `address`; vRA calls it `start`.
            let error = match f.error {
                IpamError::InvalidInput { field, why } if field == "address" => {
                    IpamError::InvalidInput {
                        field: format!("ipAllocations[{}].start", plan.index),
                        why,
                    }
                }
                IpamError::InvalidInput { field, why } if field == "hostname" => {
                    IpamError::InvalidInput {
                        field: hostname_field.clone(),
                        why,
                    }
                }
                other => other,
            };
            let names = range_names(&state, &caller, &f.tried).await;
            let what = if plan.owners.len() > 1 {
                format!(
                    "{}: address {} of {} from range(s) {names}",
                    plan.label(),
                    i + 1,
                    plan.owners.len()
                )
            } else {
                format!("{} from range(s) {names}", plan.label())
            };
            return Err(VraError::new(OP, error)
                .with_context(what)
                .with_note(roll_back_note(&f.rollback)));
        }
    };
    let mut placed: Vec<(NetworkId, Vec<IpAddr>)> = Vec::with_capacity(plans.len());
    for (p, plan) in plans.iter().enumerate() {
        match taken.network_of(p) {
            Some(n) => placed.push((n.clone(), taken.in_group(p).map(|a| a.address).collect())),
            None => {
                let note = roll_back_note(&ipam.roll_back(&caller, taken).await);
                return Err(
                    VraError::new(OP, IpamError::Internal("no address was taken".into()))
                        .with_context(plan.label())
                        .with_note(note),
                );
            }
        }
    }

    let mut results = Vec::with_capacity(plans.len());
    for (plan, (network_id, addresses)) in plans.iter().zip(&placed) {
        let net = match ipam.network_settings(&caller, network_id).await {
            Ok(n) => n,
            Err(e) => {
                let note = roll_back_note(&ipam.roll_back(&caller, taken).await);
                return Err(VraError::new(OP, e)
                    .with_context(format!("{}: reading range {network_id}", plan.label()))
                    .with_note(note));
            }
        };
        let i = &net.info;
        let mut properties = BTreeMap::new();
        properties.insert("ipamGateway.network".to_owned(), i.name.clone());
        properties.insert("ipamGateway.cidr".to_owned(), i.cidr.to_string());
        results.push(AllocationResult {
            ip_allocation_id: plan.id.clone(),
            ip_range_id: net.id.to_string(),
            ip_version: ip_version(net.family()),
            ip_addresses: addresses.iter().map(ToString::to_string).collect(),
            subnet_prefix_length: i.cidr.prefix_len().to_string(),
            gateway_addresses: i.gateway.iter().map(ToString::to_string).collect(),
            dns_server_addresses: i.dns_servers.iter().map(ToString::to_string).collect(),
            domain: i.dns_domain.clone(),
            dns_search_domains: i.dns_search_domains.clone(),
            properties,
        });
    }
    tracing::info!(resource = %rid, allocations = results.len(), addresses = taken.allocations().len(),
        "vRA allocation done");
    Ok(Json(json!({ "ipAllocations": results })))
}

/// Says how the rollback of what this request took went, for the error message.
fn roll_back_note(rollback: &Rollback) -> String {
    let done = &rollback.taken;
    let failures = &rollback.failures;
    if done.is_empty() {
        return "nothing was allocated".to_owned();
    }
    if failures.is_empty() {
        format!(
            "the {} address(es) allocated earlier in this request were released",
            done.len()
        )
    } else {
        format!(
            "rolling back the {} address(es) allocated earlier in this request left {} in place: {}",
            done.len(),
            failures.len(),
            failures.join("; ")
        )
    }
}

// ----------------------------------------------------------------------------------------------
// Deallocate IP

pub async fn deallocate_ip(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> VraResult {
    const OP: &str = "deallocate-ip";
    let body = parse_body(OP, &body)?;
    let root = Field::root(&body).map_err(op(OP))?;
    endpoint_options(&root, &caller).map_err(op(OP))?;
    let base = root
        .get("resourceInfo")
        .get("id")
        .opt_str()
        .map_err(op(OP))?
        .map(|rid| owner_base(&rid));
    let list = root.get("ipDeallocations");
    let items = list.items().map_err(op(OP))?;
    if items.is_empty() {
        return Err(VraError::new(
            OP,
            IpamError::invalid(list.path(), "at least one deallocation is required"),
        ));
    }
    // Check every item before releasing anything.
    let mut planned = Vec::with_capacity(items.len());
    for item in &items {
        let parse = || -> Result<(String, NetworkId, IpAddr), IpamError> {
            let id = item.get("id").req_str()?;
            let range = item.get("ipRangeId");
            let network = parse_id(range.path(), &range.req_str()?, "a range", "Get IP Ranges")?;
            let addr_field = item.get("ipAddress");
            let address = parse_ip(addr_field.path(), &addr_field.req_str()?)?;
            Ok((id, network, address))
        };
        planned.push(parse().map_err(op(OP))?);
    }
    let mut results = Vec::with_capacity(planned.len());
    for (k, (id, network, address)) in planned.into_iter().enumerate() {
        let context =
            || format!("ipDeallocations[{k}] (id \"{id}\", {address} in range {network})");
        let held = state
            .ipam
            .find(
                &caller,
                &Lookup::Address {
                    address,
                    network: Some(network.backend_id()),
                },
            )
            .await
            .map_err(|e| VraError::new(OP, e).with_context(context()))?;
        let message = match held.first() {
            None => "Success: the address was already released".to_owned(),
            Some(a)
                if base
                    .as_deref()
                    .is_some_and(|b| a.owner.is_some() && !owned_by(a, b)) =>
            {
                // vRA releases what it believes it holds; by now someone else may hold it.
                let holder = a.owner.as_ref().map(Owner::as_str).unwrap_or_default();
                tracing::warn!(%address, network = %network, holder,
                    "vRA asked to release an address held by another owner; left in place");
                format!("Success: not released, {address} is now held by {holder}")
            }
            Some(_) => {
                state
                    .ipam
                    .release(&caller, &network, address)
                    .await
                    .map_err(|e| VraError::new(OP, e).with_context(context()))?;
                "Success".to_owned()
            }
        };
        results.push(DeallocationResult {
            ip_deallocation_id: id,
            message,
        });
    }
    Ok(Json(json!({ "ipDeallocations": results })))
}

// ----------------------------------------------------------------------------------------------
// Update Record

pub async fn update_record(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> VraResult {
    const OP: &str = "update-record";
    let body = parse_body(OP, &body)?;
    let root = Field::root(&body).map_err(op(OP))?;
    endpoint_options(&root, &caller).map_err(op(OP))?;
    let resource = root.get("resourceInfo");
    let base = resource
        .get("id")
        .opt_str()
        .map_err(op(OP))?
        .map(|rid| owner_base(&rid));
    let hostname = match root.get("hostName").opt_str().map_err(op(OP))? {
        Some(h) => Some(h),
        None => resource_hostname(&resource).map_err(op(OP))?,
    };
    // A machine that opted out of DNS at allocation stays out when its record changes.
    let register_dns = dns_wanted(&root).map_err(op(OP))?;
    let list = root.get("addressInfos");
    let items = list.items().map_err(op(OP))?;
    if items.is_empty() {
        return Err(VraError::new(
            OP,
            IpamError::invalid(list.path(), "at least one address is required"),
        ));
    }
    let mut planned = Vec::with_capacity(items.len());
    for item in &items {
        let parse = || -> Result<(IpAddr, Option<Mac>), IpamError> {
            let addr_field = item.get("address");
            let address = parse_ip(addr_field.path(), &addr_field.req_str()?)?;
            let mac_field = item.get("macAddress");
            let mac = mac_field
                .opt_str()?
                .map(|m| Mac::parse(&m).map_err(|why| IpamError::invalid(mac_field.path(), why)))
                .transpose()?;
            Ok((address, mac))
        };
        planned.push(parse().map_err(op(OP))?);
    }
    let mut results = Vec::with_capacity(planned.len());
    for (k, (address, mac)) in planned.into_iter().enumerate() {
        let context = || format!("addressInfos[{k}] ({address})");
        let held = state
            .ipam
            .find(
                &caller,
                &Lookup::Address {
                    address,
                    network: None,
                },
            )
            .await
            .map_err(|e| VraError::new(OP, e).with_context(context()))?;
        let target = match &base {
            Some(b) => held.iter().find(|a| owned_by(a, b)).ok_or_else(|| {
                let holders: Vec<String> = held
                    .iter()
                    .map(|a| {
                        format!(
                            "{} in {}",
                            a.owner.as_ref().map(Owner::as_str).unwrap_or("no owner"),
                            a.network_id
                        )
                    })
                    .collect();
                IpamError::NotFound(if holders.is_empty() {
                    format!("{address} is not allocated")
                } else {
                    format!(
                        "{address} is not held by this machine ({b}); held by {}",
                        holders.join(", ")
                    )
                })
            }),
            None => match held.as_slice() {
                [one] => Ok(one),
                [] => Err(IpamError::NotFound(format!("{address} is not allocated"))),
                _ => Err(IpamError::Conflict(format!(
                    "{address} is allocated in {} networks; resourceInfo.id is needed to tell which",
                    held.len()
                ))),
            },
        }
        .map_err(|e| VraError::new(OP, e).with_context(context()))?;
        let changes = RecordChanges {
            hostname: hostname.clone(),
            description: None,
            mac,
        };
        if changes != RecordChanges::default() {
            if register_dns {
                state
                    .ipam
                    .update(&caller, &target.network_id, address, &changes)
                    .await
            } else {
                state
                    .ipam
                    .update_unregistered(&caller, &target.network_id, address, &changes)
                    .await
            }
            .map_err(|e| VraError::new(OP, e).with_context(context()))?;
        }
        results.push("Success");
    }
    Ok(Json(json!({ "updateResults": results })))
}

// ----------------------------------------------------------------------------------------------
// Allocate IP Range / Deallocate IP Range (on-demand networks)

pub async fn allocate_ip_range(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> VraResult {
    const OP: &str = "allocate-ip-range";
    let body = parse_body(OP, &body)?;
    let root = Field::root(&body).map_err(op(OP))?;
    endpoint_options(&root, &caller).map_err(op(OP))?;
    let ra = root.get("ipRangeAllocation");
    if !ra.is_object() {
        return Err(VraError::new(
            OP,
            IpamError::invalid(ra.path(), "is required (an object)"),
        ));
    }
    let parse = || -> Result<_, IpamError> {
        let rid = match root.get("resourceInfo").get("id").opt_str()? {
            Some(r) => r,
            None => ra.get("id").opt_str()?.ok_or_else(|| {
                IpamError::invalid(
                    "resourceInfo.id",
                    "is required: it names the network, so that a retried request gets the same one",
                )
            })?,
        };
        let owner = owner("resourceInfo.id", owner_base(&rid))?;
        let blocks_field = ra.get("ipBlockIds");
        let block_ids = blocks_field
            .str_list()?
            .iter()
            .enumerate()
            .map(|(j, t)| {
                parse_id(
                    &format!("{}[{j}]", blocks_field.path()),
                    t,
                    "a block",
                    "Get IP Blocks",
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        if block_ids.is_empty() {
            return Err(IpamError::invalid(
                blocks_field.path(),
                "at least one block id is required",
            ));
        }
        let subnet_field = ra.get("subnetCidr");
        let subnet = subnet_field
            .opt_str()?
            .map(|s| {
                let net: ipnet::IpNet = s.parse().map_err(|_| {
                    IpamError::invalid(subnet_field.path(), format!("'{s}' is not a CIDR"))
                })?;
                if net != net.trunc() {
                    return Err(IpamError::invalid(
                        subnet_field.path(),
                        format!("'{s}' has host bits set; did you mean {}?", net.trunc()),
                    ));
                }
                Ok(net)
            })
            .transpose()?;
        let prefix_field = ra.get("subnetPrefixLength");
        let prefix = match (prefix_field.opt_u64()?, subnet) {
            (Some(p), Some(s)) if p != u64::from(s.prefix_len()) => {
                return Err(IpamError::invalid(
                    prefix_field.path(),
                    format!("/{p} does not match subnetCidr {s}"),
                ));
            }
            (Some(p), _) => p,
            (None, Some(s)) => u64::from(s.prefix_len()),
            (None, None) => {
                return Err(IpamError::invalid(
                    prefix_field.path(),
                    "is required (or give subnetCidr)",
                ));
            }
        };
        let prefix = u8::try_from(prefix)
            .ok()
            .filter(|p| *p <= 128)
            .ok_or_else(|| {
                IpamError::invalid(
                    prefix_field.path(),
                    format!("/{prefix} is not a prefix length"),
                )
            })?;
        let name = ra.get("name").opt_str()?;
        Ok((owner, block_ids, subnet, prefix, name))
    };
    let (owner, block_ids, subnet, prefix, name) = parse().map_err(op(OP))?;
    let blocks = state.ipam.blocks(&caller).await.map_err(op(OP))?;

    let mut last_error: Option<IpamError> = None;
    let mut tried = Vec::new();
    for block_id in &block_ids {
        let block = blocks.iter().find(|b| &b.id == block_id);
        if let (Some(s), Some(b)) = (subnet, block)
            && !b.info.cidr.contains(&s)
        {
            continue;
        }
        tried.push(match block {
            Some(b) => format!("{} ({})", b.info.name, b.info.cidr),
            None => block_id.to_string(),
        });
        match state
            .ipam
            .allocate_network(&caller, block_id, prefix, &owner, name.clone(), subnet)
            .await
        {
            Ok(net) => {
                let mut range = IpRange::from_network(&net);
                overlay_requested_dns(&mut range, &ra).map_err(op(OP))?;
                tracing::info!(network = %net.id, cidr = %net.info.cidr, owner = %owner,
                    "vRA on-demand network allocated");
                return Ok(Json(json!({ "ipRange": range })));
            }
            Err(
                e @ (IpamError::Exhausted(_) | IpamError::Conflict(_) | IpamError::NotFound(_)),
            ) => {
                last_error = Some(e);
            }
            Err(e) => {
                return Err(VraError::new(OP, e).with_context(format!(
                    "block {}",
                    tried.last().map(String::as_str).unwrap_or_default()
                )));
            }
        }
    }
    let error = match (last_error, subnet) {
        (Some(e), _) => e,
        (None, Some(s)) => IpamError::invalid(
            "ipRangeAllocation.subnetCidr",
            format!("{s} is not inside any of the given blocks"),
        ),
        (None, None) => IpamError::NotFound("none of the given blocks exists".into()),
    };
    Err(VraError::new(OP, error).with_context(format!(
        "a /{prefix} from block(s) {}",
        if tried.is_empty() {
            block_ids
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            tried.join(", ")
        }
    )))
}

/// DNS settings the request carries fill in what the carved network does not have.
fn overlay_requested_dns(range: &mut IpRange, ra: &Field<'_>) -> Result<(), IpamError> {
    if range.dns_server_addresses.is_empty() {
        range.dns_server_addresses = ra.get("dnsServerAddresses").str_list()?;
    }
    if range.domain.is_none() {
        range.domain = ra.get("domain").opt_str()?;
    }
    if range.dns_search_domains.is_empty() {
        range.dns_search_domains = ra.get("dnsSearchDomains").str_list()?;
    }
    Ok(())
}

pub async fn deallocate_ip_range(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> VraResult {
    const OP: &str = "deallocate-ip-range";
    let body = parse_body(OP, &body)?;
    let root = Field::root(&body).map_err(op(OP))?;
    endpoint_options(&root, &caller).map_err(op(OP))?;
    let rd = root.get("ipRangeDeallocation");
    let id_field = rd.get("ipRangeId");
    let network = id_field
        .req_str()
        .and_then(|t| parse_id(id_field.path(), &t, "a range", "Allocate IP Range"))
        .map_err(op(OP))?;
    state
        .ipam
        .release_network(&caller, &network)
        .await
        .map_err(|e| VraError::new(OP, e).with_context(format!("range {network}")))?;
    tracing::info!(network = %network, "vRA on-demand network released");
    Ok(Json(json!({
        "message": format!("Successfully deallocated {network}"),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_resource_ids_are_hashed_into_a_valid_owner() {
        assert_eq!(
            owner_base("/resources/compute/1"),
            "vra:/resources/compute/1"
        );
        let long = "x".repeat(400);
        let b = owner_base(&long);
        assert!(b.starts_with("vra:sha256-") && b.len() < 60, "{b}");
        assert!(Owner::parse(&format!("{b}/nic0/255")).is_ok());
        assert_eq!(owner_base(&long), b, "stable");
    }

    #[test]
    fn consecutive_addresses_and_overflow() {
        let s: IpAddr = "10.0.0.254".parse().expect("ip");
        assert_eq!(
            nth_address("start", s, 1).expect("ok").to_string(),
            "10.0.0.255"
        );
        let top: IpAddr = "255.255.255.255".parse().expect("ip");
        assert!(nth_address("start", top, 1).is_err());
    }

    #[test]
    fn static_address_placeholders_mean_none() {
        for t in ["none", "None", "0.0.0.0", "::", "null"] {
            assert!(no_static_address(t), "{t}");
        }
        assert!(!no_static_address("10.0.0.5"));
    }
}
