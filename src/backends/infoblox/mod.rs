//! The Infoblox NIOS WAPI backend (WAPI 2.x; the spec is `shared/contracts/infoblox-wapi.md`).
//!
//! - **Networks** are the `network` and `ipv6network` objects of the configured network views
//!   (each view is an address space) that carry every `network_filter` extensible attribute
//!   (`*vRA-Enabled=true`), read with paged searches. The gateway comes from the DHCP `routers`
//!   option, DNS servers and domain from `domain-name-servers` / `domain-name` (`dhcp6.…` for
//!   IPv6), extensible attributes become tags. Network ids are `<network view>/<cidr>`: stable,
//!   and all an allocation needs.
//! - **Free counts** (`free_counts`): by default from each IPv4 network's `utilization` percent
//!   (INFERRED from the WAPI object reference), asked for in the same paged listing, so a cold
//!   listing costs O(pages) requests; `"exact"` searches each network's used addresses
//!   (O(networks) requests); `"off"` counts nothing.
//! - **Blocks** are `networkcontainer` / `ipv6networkcontainer` objects picked by CIDR (`blocks`)
//!   or extensible attributes (`block_filter`).
//! - **Allocation** creates the record (`record:host`, `fixedaddress`, or `record:a` + `record:ptr`)
//!   whose address is the object-function form of `next_available_ip` (spec §5.3, W2
//!   `IpNextAvailableInfo`): `{"_object_function": "next_available_ip", "_result_field": "ips",
//!   "_object": "network" | "ipv6network", "_object_parameters": {"network": <cidr>,
//!   "network_view": <view>}, "_parameters": {"exclude": [<routers>]}}`, so the grid picks and
//!   reserves in one atomic call; a specific address is written as is. The owner is an
//!   extensible attribute (`owner_ea`) or a `[ipamgw-owner:…]` comment marker, found again with
//!   one search.
//! - **Routers are never handed out.** A grid's next-available-IP skips only addresses some
//!   object holds; on real grids the router is often named only by the network's `routers` DHCP
//!   option (or the `gateway_ea` attribute), with no record, so the grid would hand it out. Every
//!   router address of the network goes into the function's `exclude` list instead. Reserving
//!   the router with a fixed address (as carving does for the networks it creates) would also
//!   work, but it writes into networks the gateway does not own, needs write rights on
//!   `fixedaddress` whatever the record style, and costs a search (and maybe a create) per
//!   allocation; `exclude` costs nothing and changes nothing on the grid. The string form
//!   `func:nextavailableip:<cidr>,<view>` takes no `exclude`, so it is no longer used. A
//!   specific-address request for a router is refused (`address`). Release and update of a
//!   router address touch only records the gateway made (an owner marker): a leftover
//!   allocation of the router is released; a reservation or an operator's record is left alone
//!   (a conflict).
//! - **Release** deletes the record by `_ref` (a `404` means it is gone already); **update**
//!   `PUT`s the record (the MAC lives on the host address or the fixed address).
//! - **On-demand networks** are created with `func:nextavailablenetwork:<container>,<view>,<len>`,
//!   then given a `routers` option and a reservation for the gateway.

mod client;
pub mod config;
pub mod wire;

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use ipnet::IpNet;
use reqwest::Method;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use self::client::{Api, Reply};
use self::config::{FreeCounts, InfobloxSettings, OwnerMarker, RecordStyle};
use self::wire::{DhcpOption, IpAddressEntry, Network, Record, ea_text};
use super::http::Inventories;
use super::{Backend, CallContext};
use crate::domain::{
    AllocateIn, AllocationInfo, BackendStatus, BlockInfo, CarveRequest, Family, IpamError,
    IpamResult, Lookup, Mac, NetworkInfo, Owner, RecordChanges, RecordDetails, Tag,
};
use crate::ipmath::{WholeBlock, check_carve_prefix, usable_range};

/// Marker of an owner in a comment (`owner_marker = "comment"`, and carved networks' names).
const OWNER_MARK: &str = "[ipamgw-owner:";
/// How long the set of exposed networks is trusted for allocation routing.
const INVENTORY_TTL: Duration = Duration::from_secs(30);
/// The MAC of a fixed address that is a reservation, not a DHCP client.
const NO_MAC: &str = "00:00:00:00:00:00";

const NETWORK_FIELDS: &str = "network,network_view,comment,extattrs,options,network_container";
/// [`NETWORK_FIELDS`] plus `utilization` (percent; INFERRED from the WAPI object reference, not in
/// the contract), asked for on `network` with `free_counts = "utilization"`. Not on
/// `ipv6network`: the WAPI 2.13 schema lists no `utilization` there, and asking for an unknown
/// field fails the whole search.
const NETWORK_FIELDS_UTILIZATION: &str =
    "network,network_view,comment,extattrs,options,network_container,utilization";
const V6_NETWORK_FIELDS: &str = "network,network_view,comment,extattrs,options,network_container,domain_name,domain_name_servers";
const HOST_FIELDS: &str = "name,view,network_view,comment,extattrs,ipv4addrs,ipv6addrs";
const FIXED4_FIELDS: &str = "ipv4addr,mac,name,network_view,comment,extattrs";
const FIXED6_FIELDS: &str = "ipv6addr,duid,name,network_view,comment,extattrs";
const A_FIELDS: &str = "name,view,ipv4addr,comment,extattrs";
const AAAA_FIELDS: &str = "name,view,ipv6addr,comment,extattrs";
const PTR_FIELDS: &str = "ptrdname,view,ipv4addr,ipv6addr,comment,extattrs";
const ADDRESS_FIELDS: &str = "ip_address,network,network_view,status,types,objects";

/// A network or container of an exposed view: what the gateway reads of the WAPI object, not
/// the object itself (an inventory holds 10,000 of these).
#[derive(Debug, Clone)]
struct Net {
    id: String,
    cidr: IpNet,
    view: String,
    /// The object's `_ref`.
    reference: String,
    /// The parent container's CIDR (`network_container`), host bits cleared.
    container: Option<IpNet>,
    comment: Option<String>,
    gateway: Option<IpAddr>,
    /// Further router addresses the network names (more `routers` values, a `gateway_ea` that
    /// differs from the option): never handed out either. Empty, so no allocation, for the
    /// usual single router.
    other_routers: Box<[IpAddr]>,
    dns_servers: Vec<IpAddr>,
    dns_domain: Option<String>,
    search_domains: Vec<String>,
    vlan: Option<u16>,
    tags: Vec<Tag>,
    /// The owner marker (`owner_marker`: the owner extensible attribute, or the comment's).
    owner: Option<Owner>,
    /// `utilization` in percent, when asked for and sent.
    utilization: Option<u8>,
    /// Blocks only: the DHCP options networks carved from it inherit.
    options: Vec<DhcpOption>,
}

impl Net {
    /// Is `addr` a router address of the network (never handed out)?
    fn is_router(&self, addr: IpAddr) -> bool {
        self.gateway == Some(addr) || self.other_routers.contains(&addr)
    }

    /// The router addresses inside the network: what `next_available_ip` must exclude.
    fn routers(&self) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = Vec::new();
        for a in self.gateway.iter().chain(self.other_routers.iter()) {
            if self.cidr.contains(a) && !out.contains(a) {
                out.push(*a);
            }
        }
        out
    }

    /// The address value that makes the grid pick the next free address of this network and
    /// take it in the same call: the object-function form of `next_available_ip` (spec §5.3,
    /// W2 `IpNextAvailableInfo`), with the routers in `exclude` (§5.2, W3 / W11) when there are
    /// any. `_object_parameters` is a search for exactly this network (`network` and
    /// `network_view` are searchable fields of `network` / `ipv6network`, W1).
    fn next_available_ip(&self) -> Value {
        let mut f = json!({
            "_object_function": "next_available_ip",
            "_result_field": "ips",
            "_object": match Family::of(&self.cidr) {
                Family::V4 => "network",
                Family::V6 => "ipv6network",
            },
            "_object_parameters": {
                "network": self.cidr.to_string(),
                "network_view": self.view,
            },
        });
        let exclude: Vec<String> = self.routers().iter().map(ToString::to_string).collect();
        if !exclude.is_empty() {
            f["_parameters"] = json!({ "exclude": exclude });
        }
        f
    }
}

/// The order of an inventory's networks: view, IPv4 before IPv6, CIDR.
fn net_order<'a>(view: &'a str, cidr: &IpNet) -> (&'a str, bool, IpNet) {
    (view, Family::of(cidr) == Family::V6, *cidr)
}

#[derive(Debug, Default)]
struct Inventory {
    /// Sorted by view, family and CIDR (see [`net_order`]).
    networks: Vec<Net>,
    blocks: Vec<Net>,
}

impl Inventory {
    fn network(&self, id: &str) -> Option<&Net> {
        let (view, cidr) = parse_id(id)?;
        let key = net_order(&view, &cidr);
        let at = self
            .networks
            .binary_search_by(|n| net_order(&n.view, &n.cidr).cmp(&key))
            .ok()?;
        self.networks.get(at).filter(|n| n.id == id)
    }

    fn block(&self, id: &str) -> Option<&Net> {
        self.blocks.iter().find(|n| n.id == id)
    }

    /// The block a network was carved from: a block container of its view whose CIDR is its
    /// `network_container`.
    fn block_of(&self, n: &Net) -> Option<&Net> {
        let parent = n.container?;
        self.blocks
            .iter()
            .find(|b| b.view == n.view && b.cidr == parent)
    }

    /// The exposed network holding `addr` (in `view` when known; the most specific one).
    fn holding(&self, addr: IpAddr, view: Option<&str>) -> Option<&Net> {
        self.networks
            .iter()
            .filter(|n| n.cidr.contains(&addr) && view.is_none_or(|v| v == n.view))
            .max_by_key(|n| n.cidr.prefix_len())
    }
}

/// `<view>/<cidr>` → (view, cidr).
fn parse_id(id: &str) -> Option<(String, IpNet)> {
    let (head, len) = id.rsplit_once('/')?;
    let (view, addr) = head.rsplit_once('/')?;
    let cidr: IpNet = format!("{addr}/{len}").parse().ok()?;
    (!view.is_empty()).then(|| (view.to_owned(), cidr))
}

fn net_id(view: &str, cidr: &IpNet) -> String {
    format!("{view}/{cidr}")
}

/// Splits `"web servers [ipamgw-owner:vra:123/nic0]"` into text and owner.
fn split_owner(comment: &str) -> (String, Option<Owner>) {
    if let Some(at) = comment.rfind(OWNER_MARK)
        && let Some(inner) = comment[at + OWNER_MARK.len()..].strip_suffix(']')
    {
        return (comment[..at].trim().to_owned(), Owner::parse(inner).ok());
    }
    (comment.trim().to_owned(), None)
}

/// A POSIX regular expression matching `text` literally.
fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if "\\^$.|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn split_list(text: &str) -> Vec<String> {
    text.split([',', ';', ' '])
        .map(|s| s.trim().trim_matches('"'))
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn q(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_owned(), v.into())
}

/// Eight hex digits of the SHA-256 of an owner.
fn owner_hash(owner: &Owner) -> String {
    // The precision is the number of hex digits `{:x}` writes.
    format!("{:.8x}", Sha256::digest(owner.as_str().as_bytes()))
}

/// `web-01.lab.example.com` → `web-01-1a2b3c4d.lab.example.com`: the first label gets a hash of
/// the owner and the network (one owner may hold addresses in several networks: dual stack).
fn unique_name(name: &str, owner: &Owner, network: &str) -> String {
    let hash = format!(
        "{:.8x}",
        Sha256::digest(format!("{owner}\0{network}").as_bytes())
    );
    match name.split_once('.') {
        Some((first, rest)) => format!("{first}-{hash}.{rest}"),
        None => format!("{name}-{hash}"),
    }
}

/// Addresses from `lo` to `hi`, saturating at `u128::MAX`.
fn span(lo: IpAddr, hi: IpAddr) -> u128 {
    let num = |a: IpAddr| match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    };
    num(hi).saturating_sub(num(lo)).saturating_add(1)
}

/// Addresses in a network's range (the gateway excluded when it starts it).
fn range_size(info: &NetworkInfo) -> u128 {
    span(info.range_start, info.range_end)
}

/// The free addresses a utilization (percent, 0..=100) leaves: the network's usable addresses
/// (network and broadcast excluded; the grid counts a reserved gateway as used) × (100 −
/// utilization) / 100, rounded down, and never more than the range holds (saturating for large
/// IPv6 networks). Approximate: NIOS refreshes utilization periodically, not on every change.
fn free_from_utilization(info: &NetworkInfo, percent: u8) -> u64 {
    let (lo, hi) = usable_range(&info.cidr);
    let usable = span(lo, hi);
    let left = u128::from(100 - percent.min(100));
    let free = usable
        .checked_mul(left)
        .map(|x| x / 100)
        .unwrap_or_else(|| usable / 100 * left)
        .min(range_size(info));
    u64::try_from(free).unwrap_or(u64::MAX)
}

/// A DUID-LL (type 3, hardware type 1) from a MAC: what DHCPv6 clients derive from an Ethernet
/// address.
fn duid_from_mac(mac: &Mac) -> String {
    format!("00:03:00:01:{}", mac.as_str())
}

pub struct InfobloxBackend {
    name: String,
    api: Arc<Api>,
    cfg: Arc<InfobloxSettings>,
    inventory: Inventories<Inventory>,
    /// The grid refused `_return_fields=…,utilization` once: listings stop asking for it and
    /// report free counts as unknown (`free_counts = "utilization"` only).
    no_utilization: AtomicBool,
}

impl fmt::Debug for InfobloxBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InfobloxBackend")
            .field("name", &self.name)
            .field("url", &self.cfg.base_url)
            .field("wapi_version", &self.cfg.wapi_version)
            .field("auth", &self.api.auth_mode())
            .field("record_style", &self.cfg.record_style)
            .finish_non_exhaustive()
    }
}

impl InfobloxBackend {
    pub fn new(name: &str, settings: &InfobloxSettings) -> IpamResult<Self> {
        Ok(InfobloxBackend {
            name: name.to_owned(),
            api: Arc::new(Api::new(name, settings)?),
            cfg: Arc::new(settings.clone()),
            inventory: Inventories::new("infoblox", INVENTORY_TTL),
            no_utilization: AtomicBool::new(false),
        })
    }

    /// Sessions opened with the grid so far (one per credential, plus one per expiry).
    pub fn logins(&self) -> usize {
        self.api.logins()
    }

    fn bad_data(&self, what: &str, e: impl fmt::Display) -> IpamError {
        IpamError::Undecodable {
            backend: self.name.clone(),
            detail: format!("unexpected {what}: {e}"),
        }
    }

    fn error(&self, reply: &Reply, context: &str) -> IpamError {
        self.api.error(reply, context)
    }

    // ---- inventory -------------------------------------------------------------------------

    fn read_network(&self, v: Value) -> Option<Network> {
        wire::parse("network", v)
            .map_err(|e| {
                tracing::warn!(backend = %self.name, error = %e,
                    "skipping an Infoblox network that cannot be read");
            })
            .ok()
    }

    /// What the gateway keeps of a network (`keep_options`: the DHCP options too, for blocks).
    fn to_net(&self, wire: Network, view: &str, keep_options: bool) -> Option<Net> {
        let cidr = wire.cidr()?;
        let view = wire.network_view.clone().unwrap_or_else(|| view.to_owned());
        let owner = match self.cfg.owner_marker {
            OwnerMarker::Ea => self.owner_of(&wire.extattrs, None),
            OwnerMarker::Comment => split_owner(wire.comment.as_deref().unwrap_or_default()).1,
        };
        let gateway = self.gateway(&wire);
        let other_routers: Box<[IpAddr]> = self
            .router_addresses(&wire)
            .into_iter()
            .filter(|a| Some(*a) != gateway)
            .collect();
        Some(Net {
            id: net_id(&view, &cidr),
            cidr,
            view,
            container: wire
                .network_container
                .as_deref()
                .and_then(|c| c.trim().parse::<IpNet>().ok())
                .map(|c| c.trunc()),
            gateway,
            other_routers,
            dns_servers: Self::dns_servers(&wire),
            dns_domain: Self::dns_domain(&wire),
            search_domains: Self::search_domains(&wire),
            vlan: self.vlan(&wire),
            tags: self.tags(&wire),
            owner,
            utilization: wire.utilization_percent(),
            options: if keep_options {
                wire.options
            } else {
                Vec::new()
            },
            comment: wire.comment,
            reference: wire.reference,
        })
    }

    /// A network of a listing, read as soon as its page is: pages are never held as JSON.
    fn listed_net(&self, v: Value, view: &str) -> Option<Net> {
        let wire = self.read_network(v)?;
        self.to_net(wire, view, false)
    }

    fn eas_match(wire: &Network, filter: &[(String, String)]) -> bool {
        filter.iter().all(|(k, v)| {
            wire.extattrs
                .get(k)
                .and_then(ea_text)
                .is_some_and(|t| t.split(',').any(|x| x == v))
        })
    }

    async fn load_inventory(&self, cx: &CallContext) -> IpamResult<Inventory> {
        let mut inv = Inventory::default();
        let want_blocks = !self.cfg.blocks.is_empty() || !self.cfg.block_filter.is_empty();
        for view in &self.cfg.network_views {
            let mut filters = vec![q("network_view", view.as_str())];
            for (k, v) in &self.cfg.network_filter {
                filters.push((format!("*{k}"), v.clone()));
            }
            let read = |v: Value| self.listed_net(v, view);
            inv.networks
                .extend(self.ipv4_networks(cx, &filters, &read).await?);
            inv.networks.extend(
                self.api
                    .get_all_with(cx, "ipv6network", &filters, V6_NETWORK_FIELDS, read)
                    .await?,
            );
            if !want_blocks {
                continue;
            }
            let mut filters = vec![q("network_view", view.as_str())];
            if self.cfg.blocks.is_empty() {
                for (k, v) in &self.cfg.block_filter {
                    filters.push((format!("*{k}"), v.clone()));
                }
            }
            for object in ["networkcontainer", "ipv6networkcontainer"] {
                let read = |v: Value| {
                    let wire = self.read_network(v)?;
                    let by_cidr = wire.cidr().is_some_and(|c| self.cfg.blocks.contains(&c));
                    let by_ea = !self.cfg.block_filter.is_empty()
                        && Self::eas_match(&wire, &self.cfg.block_filter);
                    if by_cidr || by_ea {
                        self.to_net(wire, view, true)
                    } else {
                        None
                    }
                };
                inv.blocks.extend(
                    self.api
                        .get_all_with(cx, object, &filters, NETWORK_FIELDS, read)
                        .await?,
                );
            }
        }
        inv.networks
            .sort_by(|a, b| net_order(&a.view, &a.cidr).cmp(&net_order(&b.view, &b.cidr)));
        inv.networks.shrink_to_fit();
        Ok(inv)
    }

    /// The `network` objects of a search, with `utilization` when free counts come from it. A
    /// grid that refuses the field (`utilization` is INFERRED) gets the search again without
    /// it, and is not asked for it again: free counts are then unknown, the listing still works.
    async fn ipv4_networks<T>(
        &self,
        cx: &CallContext,
        filters: &[(String, String)],
        read: impl Fn(Value) -> Option<T>,
    ) -> IpamResult<Vec<T>> {
        if self.cfg.free_counts != FreeCounts::Utilization
            || self.no_utilization.load(Ordering::Relaxed)
        {
            return self
                .api
                .get_all_with(cx, "network", filters, NETWORK_FIELDS, read)
                .await;
        }
        match self
            .api
            .get_all_with(cx, "network", filters, NETWORK_FIELDS_UTILIZATION, &read)
            .await
        {
            Err(IpamError::Upstream {
                status: 400,
                detail,
                ..
            }) if detail.to_ascii_lowercase().contains("utilization") => {
                self.no_utilization.store(true, Ordering::Relaxed);
                tracing::warn!(backend = %self.name, %detail,
                    "the grid refused the network utilization field; free address counts are \
                     unknown (set free_counts = \"exact\" for exact counts, or \"off\")");
                self.api
                    .get_all_with(cx, "network", filters, NETWORK_FIELDS, read)
                    .await
            }
            other => other,
        }
    }

    async fn fresh_inventory(&self, cx: &CallContext) -> IpamResult<Arc<Inventory>> {
        self.inventory
            .fresh(self.api.scope(cx), self.load_inventory(cx))
            .await
    }

    async fn cached_inventory(&self, cx: &CallContext) -> IpamResult<Arc<Inventory>> {
        self.inventory
            .cached(self.api.scope(cx), self.load_inventory(cx))
            .await
    }

    /// An exposed network by id; reloads the inventory once when it is not known.
    async fn exposed_network(&self, cx: &CallContext, network: &str) -> IpamResult<Net> {
        if parse_id(network).is_none() {
            return Err(IpamError::NotFound(format!("network {network}")));
        }
        if let Some(n) = self.cached_inventory(cx).await?.network(network) {
            return Ok(n.clone());
        }
        self.fresh_inventory(cx)
            .await?
            .network(network)
            .cloned()
            .ok_or_else(|| {
                IpamError::NotFound(format!(
                    "network {network} is not exposed by backend {}",
                    self.name
                ))
            })
    }

    // ---- mapping ---------------------------------------------------------------------------

    /// The DHCP `routers` option, else the `gateway_ea` extensible attribute.
    fn gateway(&self, n: &Network) -> Option<IpAddr> {
        n.option(&["routers"])
            .and_then(|v| split_list(v).into_iter().find_map(|s| s.parse().ok()))
            .or_else(|| {
                n.extattrs
                    .get(&self.cfg.gateway_ea)
                    .and_then(ea_text)
                    .and_then(|t| t.trim().parse().ok())
            })
    }

    /// Every router address a network names: all values of its `routers` option, and the
    /// `gateway_ea` extensible attribute.
    fn router_addresses(&self, n: &Network) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = n
            .option(&["routers"])
            .map(|v| {
                split_list(v)
                    .iter()
                    .filter_map(|s| s.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(a) = n
            .extattrs
            .get(&self.cfg.gateway_ea)
            .and_then(ea_text)
            .and_then(|t| t.trim().parse().ok())
            && !out.contains(&a)
        {
            out.push(a);
        }
        out
    }

    fn vlan(&self, n: &Network) -> Option<u16> {
        n.extattrs
            .get(&self.cfg.vlan_ea)
            .and_then(ea_text)
            .and_then(|t| t.trim().parse().ok())
    }

    fn dns_servers(n: &Network) -> Vec<IpAddr> {
        let from_option: Vec<IpAddr> = n
            .option(&["domain-name-servers", "dhcp6.name-servers"])
            .map(|v| {
                split_list(v)
                    .iter()
                    .filter_map(|s| s.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        if !from_option.is_empty() {
            return from_option;
        }
        n.domain_name_servers
            .iter()
            .filter_map(|s| s.trim().parse().ok())
            .collect()
    }

    fn dns_domain(n: &Network) -> Option<String> {
        n.option(&["domain-name"])
            .or(n.domain_name.as_deref())
            .map(|d| d.trim().trim_matches('"').to_owned())
            .filter(|d| !d.is_empty())
    }

    fn search_domains(n: &Network) -> Vec<String> {
        n.option(&["domain-search", "dhcp6.domain-search"])
            .map(split_list)
            .unwrap_or_default()
    }

    fn owner_of(&self, extattrs: &Map<String, Value>, comment: Option<&str>) -> Option<Owner> {
        match self.cfg.owner_marker {
            OwnerMarker::Ea => extattrs
                .get(&self.cfg.owner_ea)
                .and_then(ea_text)
                .and_then(|o| Owner::parse(&o).ok()),
            OwnerMarker::Comment => split_owner(comment.unwrap_or_default()).1,
        }
    }

    fn tags(&self, n: &Network) -> Vec<Tag> {
        let mut tags: Vec<Tag> = n
            .extattrs
            .iter()
            .filter(|(k, _)| {
                !(self.cfg.owner_marker == OwnerMarker::Ea && **k == self.cfg.owner_ea)
                    && **k != self.cfg.gateway_ea
            })
            .filter_map(|(k, v)| {
                ea_text(v).map(|value| Tag {
                    key: k.clone(),
                    value,
                })
            })
            .collect();
        tags.sort_by(|a, b| a.key.cmp(&b.key));
        tags
    }

    fn network_info(&self, inv: &Inventory, n: &Net) -> NetworkInfo {
        let (mut range_start, range_end) = usable_range(&n.cidr);
        let gateway = n.gateway;
        // The gateway is never handed out: a range starting on it starts after it.
        if gateway == Some(range_start) && range_start < range_end {
            range_start = match range_start {
                IpAddr::V4(a) => IpAddr::from((u32::from(a) + 1).to_be_bytes()),
                IpAddr::V6(a) => IpAddr::from((u128::from(a) + 1).to_be_bytes()),
            };
        }
        let (name, _) = split_owner(n.comment.as_deref().unwrap_or_default());
        let block = inv.block_of(n);
        NetworkInfo {
            backend_id: n.id.clone(),
            name: if name.is_empty() {
                n.cidr.to_string()
            } else {
                name
            },
            description: n.comment.clone().filter(|c| !c.trim().is_empty()),
            cidr: n.cidr,
            range_start,
            range_end,
            gateway,
            dns_servers: n.dns_servers.clone(),
            dns_domain: n.dns_domain.clone(),
            dns_search_domains: n.search_domains.clone(),
            address_space: n.view.clone(),
            vlan: n.vlan,
            tags: n.tags.clone(),
            free: None,
            block: block.map(|b| b.id.clone()),
            owner: block.and(n.owner.clone()),
        }
    }

    fn block_info(&self, b: &Net) -> BlockInfo {
        let (name, _) = split_owner(b.comment.as_deref().unwrap_or_default());
        BlockInfo {
            backend_id: b.id.clone(),
            name: if name.is_empty() {
                b.cidr.to_string()
            } else {
                name
            },
            description: b.comment.clone().filter(|c| !c.trim().is_empty()),
            cidr: b.cidr,
            address_space: b.view.clone(),
            gateway: None,
            dns_servers: b.dns_servers.clone(),
            dns_domain: b.dns_domain.clone(),
            dns_search_domains: b.search_domains.clone(),
            tags: b.tags.clone(),
        }
    }

    /// The allocation a record makes of `addr`, when `addr` is in an exposed network.
    fn allocation(&self, inv: &Inventory, rec: &Record, addr: IpAddr) -> Option<AllocationInfo> {
        let net = inv.holding(addr, rec.network_view.as_deref())?;
        let comment = rec.comment.as_deref().unwrap_or_default();
        let description = match self.cfg.owner_marker {
            OwnerMarker::Ea => comment.trim().to_owned(),
            OwnerMarker::Comment => split_owner(comment).0,
        };
        let mac = rec
            .host_address(addr)
            .and_then(|h| h.mac.clone())
            .or_else(|| rec.mac.clone())
            .filter(|m| m != NO_MAC)
            .and_then(|m| Mac::parse(&m).ok());
        Some(AllocationInfo {
            network: net.id.clone(),
            address: addr,
            owner: self.owner_of(&rec.extattrs, rec.comment.as_deref()),
            details: RecordDetails {
                hostname: rec.name.clone().filter(|n| !n.is_empty()),
                description: (!description.is_empty()).then_some(description),
                mac,
            },
            reference: Some(rec.reference.clone()),
        })
    }

    // ---- records ---------------------------------------------------------------------------

    /// The object types the record style creates, with the fields the gateway reads.
    fn record_types(&self) -> &'static [(&'static str, &'static str)] {
        match self.cfg.record_style {
            RecordStyle::Host => &[("record:host", HOST_FIELDS)],
            RecordStyle::FixedAddress => &[
                ("fixedaddress", FIXED4_FIELDS),
                ("ipv6fixedaddress", FIXED6_FIELDS),
            ],
            RecordStyle::APtr => &[("record:a", A_FIELDS), ("record:aaaa", AAAA_FIELDS)],
        }
    }

    fn fields_of(object: &str) -> &'static str {
        match object {
            "record:host" => HOST_FIELDS,
            "fixedaddress" => FIXED4_FIELDS,
            "ipv6fixedaddress" => FIXED6_FIELDS,
            "record:a" => A_FIELDS,
            "record:aaaa" => AAAA_FIELDS,
            "record:ptr" => PTR_FIELDS,
            _ => "comment",
        }
    }

    /// The record-style object and its address field for a family.
    fn object_for(&self, family: Family) -> (&'static str, &'static str) {
        match (self.cfg.record_style, family) {
            (RecordStyle::Host, _) => ("record:host", HOST_FIELDS),
            (RecordStyle::FixedAddress, Family::V4) => ("fixedaddress", FIXED4_FIELDS),
            (RecordStyle::FixedAddress, Family::V6) => ("ipv6fixedaddress", FIXED6_FIELDS),
            (RecordStyle::APtr, Family::V4) => ("record:a", A_FIELDS),
            (RecordStyle::APtr, Family::V6) => ("record:aaaa", AAAA_FIELDS),
        }
    }

    fn parse_records(&self, values: Vec<Value>) -> Vec<Record> {
        values
            .into_iter()
            .filter_map(|v| match wire::parse::<Record>("record", v) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(backend = %self.name, error = %e,
                        "skipping an Infoblox record that cannot be read");
                    None
                }
            })
            .collect()
    }

    /// The search filters that find an address of `object` in `net`.
    fn address_filters(&self, object: &str, net: &Net, addr: IpAddr) -> Vec<(String, String)> {
        let field = if addr.is_ipv4() {
            "ipv4addr"
        } else {
            "ipv6addr"
        };
        let mut f = vec![q(field, addr.to_string())];
        match object {
            "record:a" | "record:aaaa" | "record:ptr" => {
                f.push(q("view", self.cfg.dns_view.as_str()))
            }
            _ => f.push(q("network_view", net.view.as_str())),
        }
        f
    }

    /// The gateway's records holding `addr` in `net`.
    async fn records_at(
        &self,
        cx: &CallContext,
        net: &Net,
        addr: IpAddr,
    ) -> IpamResult<Vec<Record>> {
        let (object, fields) = self.object_for(Family::of_addr(&addr));
        let found = self
            .api
            .get_all(cx, object, &self.address_filters(object, net, addr), fields)
            .await?;
        Ok(self
            .parse_records(found)
            .into_iter()
            .filter(|r| r.addresses().contains(&addr))
            .collect())
    }

    /// Is anything at all using `addr` in `net` (`ipv4address` / `ipv6address` status)?
    async fn address_used(&self, cx: &CallContext, net: &Net, addr: IpAddr) -> IpamResult<bool> {
        let object = if addr.is_ipv4() {
            "ipv4address"
        } else {
            "ipv6address"
        };
        let reply = self
            .api
            .get(
                cx,
                object,
                &[
                    q("ip_address", addr.to_string()),
                    q("network_view", net.view.as_str()),
                    q("_return_fields", ADDRESS_FIELDS),
                ],
            )
            .await?;
        if !reply.ok() {
            return Err(self.error(&reply, &format!("search {object} {addr}")));
        }
        let entries: Vec<IpAddressEntry> = serde_json::from_value(reply.body).unwrap_or_default();
        Ok(entries
            .iter()
            .any(|e| e.addr() == Some(addr) && e.is_held()))
    }

    /// The owner marker as extensible attributes, merged into `extra`.
    fn owner_eas(&self, owner: &Owner, mut extra: Map<String, Value>) -> Map<String, Value> {
        if self.cfg.owner_marker == OwnerMarker::Ea {
            extra.insert(self.cfg.owner_ea.clone(), json!({"value": owner.as_str()}));
        }
        extra
    }

    fn comment(&self, owner: &Owner, description: Option<&str>) -> String {
        let text = description
            .map(str::to_owned)
            .unwrap_or_else(|| format!("ipam-gateway: {owner}"));
        match self.cfg.owner_marker {
            OwnerMarker::Ea => text,
            OwnerMarker::Comment => format!("{} {OWNER_MARK}{owner}]", text.trim())
                .trim()
                .to_owned(),
        }
    }

    /// The record name: the hostname (completed with the network's `domain-name` when DNS needs
    /// an FQDN), or one derived from the owner.
    fn record_name(&self, net: &Net, owner: &Owner, hostname: Option<&str>) -> IpamResult<String> {
        let given = hostname
            .map(|h| h.trim().trim_end_matches('.'))
            .filter(|h| !h.is_empty());
        let base = match given {
            Some(h) => h.to_owned(),
            None => {
                let mut s: String = owner
                    .as_str()
                    .to_ascii_lowercase()
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                    .collect();
                while s.contains("--") {
                    s = s.replace("--", "-");
                }
                let s: String = s.trim_matches('-').chars().take(40).collect();
                format!("ipamgw-{}-{}", s.trim_matches('-'), owner_hash(owner))
            }
        };
        let dns = self.cfg.record_style == RecordStyle::APtr
            || (self.cfg.record_style == RecordStyle::Host && self.cfg.configure_for_dns);
        if !dns || base.contains('.') {
            return Ok(base);
        }
        match net.dns_domain.clone() {
            Some(d) => Ok(format!("{base}.{d}")),
            None if self.cfg.record_style == RecordStyle::APtr => Err(IpamError::invalid(
                "hostname",
                format!(
                    "'{base}' is not fully qualified and network {} has no domain-name option; \
                     A records need an FQDN",
                    net.cidr
                ),
            )),
            None => Ok(base),
        }
    }

    /// A created (or updated) object from a `201`/`200`: the object itself when the grid
    /// honoured `_return_fields`, else read back by its ref.
    async fn object_reply(
        &self,
        cx: &CallContext,
        reply: Reply,
        fields: &str,
        context: &str,
    ) -> IpamResult<Record> {
        if !reply.ok() {
            return Err(self.create_error(&reply, context));
        }
        match reply.body {
            Value::Object(_) => serde_json::from_value(reply.body)
                .map_err(|e| self.bad_data(&format!("answer to {context}"), e)),
            Value::String(reference) => {
                let got = self
                    .api
                    .get(cx, &reference, &[q("_return_fields", fields)])
                    .await?;
                if !got.ok() {
                    return Err(self.error(&got, &format!("read {reference}")));
                }
                serde_json::from_value(got.body)
                    .map_err(|e| self.bad_data(&format!("answer to read {reference}"), e))
            }
            other => Err(self.bad_data(&format!("answer to {context}"), other)),
        }
    }

    fn create_error(&self, reply: &Reply, context: &str) -> IpamError {
        if reply.says("parent was not found") {
            return IpamError::invalid(
                "hostname",
                format!(
                    "Infoblox, {context}: {} (no DNS zone holds the name)",
                    reply.detail()
                ),
            );
        }
        if reply.says("Unknown extensible attribute") {
            return IpamError::Upstream {
                backend: self.name.clone(),
                status: reply.status,
                detail: format!(
                    "{context}: {} (create the extensible attribute in the grid, see the README)",
                    reply.detail()
                ),
            };
        }
        self.error(reply, context)
    }

    async fn post(
        &self,
        cx: &CallContext,
        object: &str,
        fields: &str,
        body: &Value,
    ) -> IpamResult<Reply> {
        self.api
            .send(
                cx,
                Method::POST,
                object,
                &[q("_return_fields", fields)],
                Some(body),
            )
            .await
    }

    async fn delete_ref(&self, cx: &CallContext, reference: &str) -> IpamResult<()> {
        let reply = self
            .api
            .send(cx, Method::DELETE, reference, &[], None)
            .await?;
        match reply.status {
            200..=299 | 404 => Ok(()),
            _ if reply.says("Data.NotFound") => Ok(()),
            _ => Err(self.error(&reply, &format!("delete {reference}"))),
        }
    }

    async fn create_record(
        &self,
        cx: &CallContext,
        net: &Net,
        req: &AllocateIn,
        target: Value,
    ) -> IpamResult<(Record, Option<String>)> {
        let family = Family::of(&net.cidr);
        let v4 = family == Family::V4;
        let (object, fields) = self.object_for(family);
        let comment = self.comment(&req.owner, req.details.description.as_deref());
        let extattrs = self.owner_eas(&req.owner, Map::new());
        let context = format!("create {object} in {} (view {})", net.cidr, net.view);
        let mac = req.details.mac.as_ref();
        match self.cfg.record_style {
            RecordStyle::Host => {
                let name = self.record_name(net, &req.owner, req.details.hostname.as_deref())?;
                let mut entry = Map::new();
                entry.insert(
                    (if v4 { "ipv4addr" } else { "ipv6addr" }).into(),
                    json!(target),
                );
                match mac {
                    Some(m) if v4 => {
                        entry.insert("mac".into(), json!(m.as_str()));
                        entry.insert(
                            "configure_for_dhcp".into(),
                            json!(self.cfg.configure_for_dhcp),
                        );
                    }
                    _ => {
                        entry.insert("configure_for_dhcp".into(), json!(false));
                    }
                }
                let mut body = json!({
                    "name": name,
                    "configure_for_dns": self.cfg.configure_for_dns,
                    "network_view": net.view,
                    "comment": comment,
                    "extattrs": extattrs,
                });
                body[if v4 { "ipv4addrs" } else { "ipv6addrs" }] = json!([Value::Object(entry)]);
                if self.cfg.configure_for_dns {
                    body["view"] = json!(self.cfg.dns_view);
                }
                let mut reply = self.post(cx, object, fields, &body).await?;
                if !reply.ok() && reply.says("already exists") {
                    // Host names are unique per view, but one machine holds several addresses
                    // (one owner each: `vra:<id>/nic0`, `…/nic1`; or one owner in two networks:
                    // dual stack): the next one is named `<name>-<hash of owner and network>`.
                    let unique = unique_name(&name, &req.owner, &net.id);
                    tracing::debug!(backend = %self.name, taken = %name, name = %unique,
                        "host name taken by another record; using an owner-specific one");
                    body["name"] = json!(unique);
                    reply = self.post(cx, object, fields, &body).await?;
                }
                Ok((self.object_reply(cx, reply, fields, &context).await?, None))
            }
            RecordStyle::FixedAddress => {
                let mut body = json!({
                    "network_view": net.view,
                    "comment": comment,
                    "extattrs": extattrs,
                });
                if let Some(h) = req
                    .details
                    .hostname
                    .as_deref()
                    .filter(|h| !h.trim().is_empty())
                {
                    body["name"] = json!(h.trim());
                }
                if v4 {
                    body["ipv4addr"] = json!(target);
                    body["mac"] = json!(mac.map(Mac::as_str).unwrap_or(NO_MAC));
                } else {
                    body["ipv6addr"] = json!(target);
                    body["duid"] = json!(
                        mac.map(duid_from_mac)
                            .unwrap_or_else(|| "00:00:00:00:00:00:00:00".to_owned())
                    );
                }
                let reply = self.post(cx, object, fields, &body).await?;
                Ok((self.object_reply(cx, reply, fields, &context).await?, None))
            }
            RecordStyle::APtr => {
                let name = self.record_name(net, &req.owner, req.details.hostname.as_deref())?;
                let addr_field = if v4 { "ipv4addr" } else { "ipv6addr" };
                let mut body = json!({
                    "name": name,
                    "view": self.cfg.dns_view,
                    "comment": comment,
                    "extattrs": extattrs,
                });
                body[addr_field] = json!(target);
                let reply = self.post(cx, object, fields, &body).await?;
                let rec = self.object_reply(cx, reply, fields, &context).await?;
                let Some(addr) = rec.addresses().into_iter().next() else {
                    let _ = self.delete_ref(cx, &rec.reference).await;
                    return Err(self.bad_data(&context, "the record holds no address"));
                };
                let mut ptr = json!({
                    "ptrdname": name,
                    "view": self.cfg.dns_view,
                    "comment": comment,
                    "extattrs": extattrs,
                });
                ptr[addr_field] = json!(addr.to_string());
                let created = self.post(cx, "record:ptr", PTR_FIELDS, &ptr).await;
                let failure = match created {
                    Ok(r) if r.ok() => None,
                    Ok(r) => Some(self.create_error(&r, &format!("create record:ptr for {addr}"))),
                    Err(e) => Some(e),
                };
                if let Some(e) = failure {
                    if let Err(undo) = self.delete_ref(cx, &rec.reference).await {
                        tracing::error!(backend = %self.name, error = %undo,
                            "could not delete an A record after its PTR failed");
                    }
                    return Err(e);
                }
                Ok((rec, Some(name)))
            }
        }
    }

    /// Host addresses of a record as they go back in a `PUT` (read-only fields dropped).
    fn host_entries(
        rec: &Record,
        v4: bool,
        keep: impl Fn(&wire::HostAddress) -> bool,
        mac_for: Option<(IpAddr, &Mac, bool)>,
    ) -> Vec<Value> {
        let list = if v4 { &rec.ipv4addrs } else { &rec.ipv6addrs };
        list.iter()
            .filter(|h| keep(h))
            .filter_map(|h| {
                let addr = h.addr()?;
                let mut e = Map::new();
                e.insert(
                    (if v4 { "ipv4addr" } else { "ipv6addr" }).into(),
                    json!(addr.to_string()),
                );
                let mut mac = h.mac.clone();
                let mut dhcp = h.configure_for_dhcp;
                if let Some((at, m, on)) = mac_for
                    && at == addr
                {
                    mac = Some(m.as_str().to_owned());
                    dhcp = Some(on);
                }
                if let Some(m) = mac.filter(|_| v4) {
                    e.insert("mac".into(), json!(m));
                }
                if let Some(d) = h.duid.clone().filter(|_| !v4) {
                    e.insert("duid".into(), json!(d));
                }
                if let Some(d) = dhcp {
                    e.insert("configure_for_dhcp".into(), json!(d));
                }
                Some(Value::Object(e))
            })
            .collect()
    }

    async fn put(
        &self,
        cx: &CallContext,
        reference: &str,
        fields: &str,
        body: &Value,
    ) -> IpamResult<Reply> {
        self.api
            .send(
                cx,
                Method::PUT,
                reference,
                &[q("_return_fields", fields)],
                Some(body),
            )
            .await
    }

    /// Deletes the PTR records of `addr` in the DNS view (A + PTR style); only those with an
    /// owner marker when `owned_only`.
    async fn delete_ptrs(
        &self,
        cx: &CallContext,
        net: &Net,
        addr: IpAddr,
        owned_only: bool,
    ) -> IpamResult<()> {
        let found = self
            .api
            .get_all(
                cx,
                "record:ptr",
                &self.address_filters("record:ptr", net, addr),
                PTR_FIELDS,
            )
            .await?;
        for p in self.parse_records(found) {
            if owned_only && self.owner_of(&p.extattrs, p.comment.as_deref()).is_none() {
                continue;
            }
            self.delete_ref(cx, &p.reference).await?;
        }
        Ok(())
    }

    /// Addresses of the network's range that nothing uses (saturating for large IPv6 networks).
    async fn free_in(&self, cx: &CallContext, net: &Net, info: &NetworkInfo) -> IpamResult<u64> {
        let num = |a: IpAddr| match a {
            IpAddr::V4(v) => u128::from(u32::from(v)),
            IpAddr::V6(v) => u128::from(v),
        };
        let (lo, hi) = (num(info.range_start), num(info.range_end));
        let size = range_size(info);
        let mut used: Vec<IpAddr> = self
            .used_in(cx, net)
            .await?
            .iter()
            .filter_map(IpAddressEntry::addr)
            .collect();
        // Routers are never handed out, held by a record or not.
        used.extend(net.routers());
        used.sort_unstable();
        used.dedup();
        let used = used
            .iter()
            .filter(|a| (lo..=hi).contains(&num(**a)))
            .count() as u128;
        Ok(u64::try_from(size.saturating_sub(used)).unwrap_or(u64::MAX))
    }

    async fn used_in(&self, cx: &CallContext, net: &Net) -> IpamResult<Vec<IpAddressEntry>> {
        let object = match Family::of(&net.cidr) {
            Family::V4 => "ipv4address",
            Family::V6 => "ipv6address",
        };
        let found = self
            .api
            .get_all(
                cx,
                object,
                &[
                    q("network", net.cidr.to_string()),
                    q("network_view", net.view.as_str()),
                    q("status", "USED"),
                ],
                ADDRESS_FIELDS,
            )
            .await?;
        Ok(found
            .into_iter()
            .filter_map(|v| serde_json::from_value::<IpAddressEntry>(v).ok())
            .filter(IpAddressEntry::is_held)
            .collect())
    }
}

/// What [`Backend::check`] finds about the grid's set-up, without changing data.
#[derive(Debug, Default)]
struct SetupFindings {
    problems: Vec<String>,
    warnings: Vec<String>,
    unchecked: Vec<String>,
}

impl InfobloxBackend {
    /// Whether extensible attribute `name` is defined on the grid: `GET
    /// extensibleattributedef?name=<name>&_return_fields=name,type` answers `[]` when it is not,
    /// else `[{"_ref": "extensibleattributedef/…:<name>", "name": "<name>", "type": "STRING"}]`
    /// (object `extensibleattributedef`, searchable by `name`: W1 infoblox-client
    /// `objects.py` `EADefinition`; fixtures 31, 32). `Err(why)` when the grid would not say.
    async fn ea_defined(&self, cx: &CallContext, name: &str) -> IpamResult<Result<bool, String>> {
        let query = [
            ("name".to_owned(), name.to_owned()),
            ("_return_fields".to_owned(), "name,type".to_owned()),
        ];
        let reply = self.api.get(cx, "extensibleattributedef", &query).await?;
        if !reply.ok() {
            return Ok(Err(format!(
                "the grid answered {} to GET extensibleattributedef: {}",
                reply.status,
                reply.detail()
            )));
        }
        match &reply.body {
            Value::Array(defs) => Ok(Ok(defs
                .iter()
                .any(|d| d.get("name").and_then(Value::as_str) == Some(name)))),
            other => Ok(Err(format!(
                "the grid answered GET extensibleattributedef with {} instead of a list",
                if other.is_null() {
                    "no JSON"
                } else {
                    "an object"
                }
            ))),
        }
    }

    /// Every extensible attribute the config names is defined on the grid. The grid answers 400
    /// `Unknown extensible attribute: <name>` to any search or write that uses an undefined one
    /// (fixture 26; contract §4 and §6, W4): the owner EA on every allocation, the filters on
    /// every listing. `vlan_ea` and `gateway_ea` are only read, so a missing one is a warning.
    async fn setup_findings(&self, cx: &CallContext) -> IpamResult<SetupFindings> {
        const CREATE: &str = "create it under Grid → Administration → Extensible Attributes";
        let mut wanted: Vec<(&str, String, bool)> = Vec::new();
        if self.cfg.owner_marker == OwnerMarker::Ea {
            wanted.push((
                self.cfg.owner_ea.as_str(),
                format!(
                    "so every allocation fails; {CREATE} (type String), or set owner_ea to an \
                     existing one"
                ),
                true,
            ));
        }
        for (k, _) in &self.cfg.network_filter {
            wanted.push((
                k.as_str(),
                format!(
                    "so no network can be listed; {CREATE} and set it on the networks to expose"
                ),
                true,
            ));
        }
        for (k, _) in &self.cfg.block_filter {
            wanted.push((
                k.as_str(),
                format!("so no block can be found; {CREATE} and set it on the network containers to use as blocks"),
                true,
            ));
        }
        wanted.push((
            self.cfg.gateway_ea.as_str(),
            "IPv6 networks get no gateway from it".to_owned(),
            false,
        ));
        wanted.push((
            self.cfg.vlan_ea.as_str(),
            "networks get no VLAN from it".to_owned(),
            false,
        ));
        let key = |name: &str| {
            if self.cfg.owner_marker == OwnerMarker::Ea && name == self.cfg.owner_ea {
                "owner_ea"
            } else if self.cfg.network_filter.iter().any(|(k, _)| k == name) {
                "network_filter"
            } else if self.cfg.block_filter.iter().any(|(k, _)| k == name) {
                "block_filter"
            } else if name == self.cfg.gateway_ea {
                "gateway_ea"
            } else {
                "vlan_ea"
            }
        };
        let mut found = SetupFindings::default();
        // One search per distinct name; the first (most needed) use of a name is reported.
        let mut asked: Vec<&str> = Vec::new();
        for (name, consequence, needed) in &wanted {
            if asked.contains(name) {
                continue;
            }
            asked.push(name);
            match self.ea_defined(cx, name).await? {
                Ok(true) => {}
                Ok(false) if *needed => found.problems.push(format!(
                    "the extensible attribute '{name}' ({}) is not defined on the grid (it \
                     answers 400 'Unknown extensible attribute: {name}' to every search and \
                     write that uses it), {consequence}",
                    key(name)
                )),
                Ok(false) => found.warnings.push(format!(
                    "extensible attribute '{name}' ({}) is not defined on the grid: {consequence}",
                    key(name)
                )),
                Err(why) => found.unchecked.push(format!(
                    "whether the extensible attribute '{name}' ({}) is defined: {why}",
                    key(name)
                )),
            }
        }
        found.unchecked.push(
            "whether the grid user may create records in the exposed networks (only a write \
             shows it)"
                .to_owned(),
        );
        Ok(found)
    }
}

#[async_trait]
impl Backend for InfobloxBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "infoblox"
    }

    fn atomic_allocation(&self) -> bool {
        true
    }

    /// The lower address was written first. WAPI refs are opaque (base64 of an internal key
    /// plus the name: `shared/contracts/infoblox-wapi.md` §2) and records carry no creation
    /// time the gateway reads, so the order comes from how addresses are handed out:
    /// `next_available_ip` (in the create) gives the lowest free address of the network atomically (§5.3),
    /// so of two records an owner's racing attempts took, the lower address was taken first.
    /// The addresses it skips (the network's gateway, excluded) are the same for every call, so
    /// they do not change that order. Residual, and not closed here: if a lower address is
    /// freed inside the race window (another owner released between the two attempts'
    /// allocations), the later attempt takes it and ranks first; when the earlier attempt has
    /// already looked again and answered with its own record before the later one was written,
    /// the owner keeps both and the two answers differ. A specific address asked for (`start`)
    /// is the same address on both attempts, so the second is refused, not a second record.
    /// Equal addresses (never two records of one network) fall back to the ref, so the order
    /// is total.
    fn first_written(&self, a: &AllocationInfo, b: &AllocationInfo) -> std::cmp::Ordering {
        a.address
            .cmp(&b.address)
            .then_with(|| a.reference.cmp(&b.reference))
    }

    fn supports_passthrough(&self) -> bool {
        matches!(self.cfg.auth, config::InfobloxAuth::Passthrough { .. })
    }

    /// One authenticated search of the network views (a handful of objects), not the listing.
    async fn ping(&self, cx: &CallContext) -> IpamResult<()> {
        self.api
            .get_all(cx, "networkview", &[], "name")
            .await
            .map(|_| ())
    }

    async fn check(&self, cx: &CallContext) -> IpamResult<BackendStatus> {
        let views = self.api.get_all(cx, "networkview", &[], "name").await?;
        let known: Vec<String> = views
            .iter()
            .filter_map(|v| v.get("name").and_then(Value::as_str).map(str::to_owned))
            .collect();
        let missing: Vec<&str> = self
            .cfg
            .network_views
            .iter()
            .filter(|v| !known.contains(v))
            .map(String::as_str)
            .collect();
        let found = self.setup_findings(cx).await?;
        let inv = match self.fresh_inventory(cx).await {
            Ok(inv) => Some(inv),
            // An undefined filter EA fails the listing too; the problems already say why.
            Err(e) if !found.problems.is_empty() => {
                tracing::debug!(backend = %self.name, error = %e, "listing failed during check");
                None
            }
            Err(e) => return Err(e),
        };
        let mut detail = format!(
            "Infoblox {} WAPI v{} (auth {}), network views {}, record style {}",
            self.api.base_url(),
            self.cfg.wapi_version,
            self.api.auth_mode(),
            self.cfg.network_views.join(", "),
            self.cfg.record_style.as_str()
        );
        if !missing.is_empty() {
            detail.push_str(&format!(
                "; WARNING: network view(s) not found: {}",
                missing.join(", ")
            ));
        }
        for w in &found.warnings {
            detail.push_str(&format!("; WARNING: {w}"));
        }
        Ok(BackendStatus {
            backend: self.name.clone(),
            kind: "infoblox",
            detail,
            networks: inv.as_ref().map_or(0, |i| i.networks.len()),
            blocks: inv.as_ref().map_or(0, |i| i.blocks.len()),
            problems: found.problems,
            unchecked: found.unchecked,
        })
    }

    async fn networks(&self, cx: &CallContext) -> IpamResult<Vec<NetworkInfo>> {
        let inv = self.fresh_inventory(cx).await?;
        let mut out = Vec::with_capacity(inv.networks.len());
        for n in &inv.networks {
            let mut info = self.network_info(&inv, n);
            info.free = match self.cfg.free_counts {
                // From the listing itself: no request per network.
                FreeCounts::Utilization => n.utilization.map(|u| free_from_utilization(&info, u)),
                // One address search per network: O(networks) requests.
                FreeCounts::Exact => Some(self.free_in(cx, n, &info).await?),
                FreeCounts::Off => None,
            };
            out.push(info);
        }
        Ok(out)
    }

    async fn blocks(&self, cx: &CallContext) -> IpamResult<Vec<BlockInfo>> {
        let inv = self.cached_inventory(cx).await?;
        Ok(inv.blocks.iter().map(|b| self.block_info(b)).collect())
    }

    async fn allocate(&self, cx: &CallContext, req: &AllocateIn) -> IpamResult<AllocationInfo> {
        let net = self.exposed_network(cx, &req.network).await?;
        let target = match req.address {
            Some(a) => {
                if !net.cidr.contains(&a) {
                    return Err(IpamError::invalid(
                        "address",
                        format!("{a} is not in network {}", net.cidr),
                    ));
                }
                let (lo, hi) = usable_range(&net.cidr);
                if a < lo || a > hi {
                    return Err(IpamError::invalid(
                        "address",
                        format!("{a} is the network or broadcast address of {}", net.cidr),
                    ));
                }
                // Checked here, not by the grid: a router named only by the `routers` option
                // (or `gateway_ea`) is held by no object, so the grid would accept it.
                if net.is_router(a) {
                    return Err(IpamError::invalid(
                        "address",
                        format!(
                            "{a} is the gateway (router) of network {} (view {}); it is never \
                             handed out",
                            net.cidr, net.view
                        ),
                    ));
                }
                if self.address_used(cx, &net, a).await? {
                    return Err(IpamError::Conflict(format!(
                        "{a} in {} (view {}) is already in use",
                        net.cidr, net.view
                    )));
                }
                json!(a.to_string())
            }
            None => net.next_available_ip(),
        };
        let (rec, _) = self.create_record(cx, &net, req, target).await?;
        let family = Family::of(&net.cidr);
        let address = match req.address {
            Some(a) => a,
            None => rec
                .addresses()
                .into_iter()
                .find(|a| Family::of_addr(a) == family && net.cidr.contains(a))
                .ok_or_else(|| self.bad_data("create answer", "no address in the network"))?,
        };
        let inv = self.cached_inventory(cx).await?;
        let mut info = self
            .allocation(&inv, &rec, address)
            .unwrap_or(AllocationInfo {
                network: net.id.clone(),
                address,
                owner: None,
                details: RecordDetails::default(),
                reference: Some(rec.reference.clone()),
            });
        info.network = net.id.clone();
        info.owner = Some(req.owner.clone());
        if info.details.mac.is_none() {
            info.details.mac = req
                .details
                .mac
                .clone()
                .filter(|_| self.cfg.record_style != RecordStyle::APtr && family == Family::V4);
        }
        Ok(info)
    }

    async fn find(&self, cx: &CallContext, lookup: &Lookup) -> IpamResult<Vec<AllocationInfo>> {
        let inv = self.cached_inventory(cx).await?;
        let mut out = Vec::new();
        match lookup {
            Lookup::Owner(owner) => {
                let filter = match self.cfg.owner_marker {
                    OwnerMarker::Ea => q(&format!("*{}", self.cfg.owner_ea), owner.as_str()),
                    OwnerMarker::Comment => q(
                        "comment~",
                        format!("{}$", regex_escape(&format!("{OWNER_MARK}{owner}]"))),
                    ),
                };
                for (object, fields) in self.record_types() {
                    let found = self
                        .api
                        .get_all(cx, object, std::slice::from_ref(&filter), fields)
                        .await?;
                    for rec in self.parse_records(found) {
                        if self
                            .owner_of(&rec.extattrs, rec.comment.as_deref())
                            .as_ref()
                            != Some(owner)
                        {
                            continue;
                        }
                        for addr in rec.addresses() {
                            out.extend(self.allocation(&inv, &rec, addr));
                        }
                    }
                }
            }
            Lookup::Address { address, network } => {
                let nets: Vec<Net> = match network {
                    Some(id) => match inv.network(id) {
                        Some(n) => vec![n.clone()],
                        None => return Ok(Vec::new()),
                    },
                    None => {
                        let mut by_view: HashMap<&str, &Net> = HashMap::new();
                        for n in inv.networks.iter().filter(|n| n.cidr.contains(address)) {
                            by_view.entry(n.view.as_str()).or_insert(n);
                        }
                        by_view.into_values().cloned().collect()
                    }
                };
                for net in &nets {
                    for rec in self.records_at(cx, net, *address).await? {
                        if let Some(mut a) = self.allocation(&inv, &rec, *address) {
                            a.network = net.id.clone();
                            out.push(a);
                        }
                    }
                }
            }
        }
        out.sort_by(|a, b| (&a.network, a.address).cmp(&(&b.network, b.address)));
        out.dedup_by(|a, b| a.network == b.network && a.address == b.address);
        Ok(out)
    }

    async fn release(&self, cx: &CallContext, network: &str, address: IpAddr) -> IpamResult<()> {
        let net = self.exposed_network(cx, network).await?;
        let v4 = address.is_ipv4();
        let mut records = self.records_at(cx, &net, address).await?;
        // A router address: only what the gateway made (an allocation an older version handed
        // out) is released; a reservation or an operator's record of the router is left alone.
        let router = net.is_router(address);
        if router {
            let held = records.len();
            records.retain(|r| self.owner_of(&r.extattrs, r.comment.as_deref()).is_some());
            if records.is_empty() && held > 0 {
                return Err(IpamError::Conflict(format!(
                    "{address} is the gateway of network {network}; the record holding it was \
                     not made by ipam-gateway and is not released"
                )));
            }
        }
        for rec in records {
            if rec.object_type() == "record:host" && rec.addresses().len() > 1 {
                let entries = Self::host_entries(&rec, v4, |h| h.addr() != Some(address), None);
                let mut body = Map::new();
                body.insert(
                    (if v4 { "ipv4addrs" } else { "ipv6addrs" }).into(),
                    Value::Array(entries),
                );
                let reply = self
                    .put(cx, &rec.reference, HOST_FIELDS, &Value::Object(body))
                    .await?;
                if !reply.ok() && reply.status != 404 {
                    return Err(self.error(&reply, &format!("update {}", rec.reference)));
                }
            } else {
                self.delete_ref(cx, &rec.reference).await?;
            }
        }
        if self.cfg.record_style == RecordStyle::APtr {
            self.delete_ptrs(cx, &net, address, router).await?;
        }
        Ok(())
    }

    async fn update(
        &self,
        cx: &CallContext,
        network: &str,
        address: IpAddr,
        changes: &RecordChanges,
    ) -> IpamResult<AllocationInfo> {
        let net = self.exposed_network(cx, network).await?;
        let mut records = self.records_at(cx, &net, address).await?;
        // A router address: only an allocation the gateway made is changed, never the router's
        // reservation or an operator's record (as in `release`).
        if net.is_router(address) {
            let held = records.len();
            records.retain(|r| self.owner_of(&r.extattrs, r.comment.as_deref()).is_some());
            if records.is_empty() && held > 0 {
                return Err(IpamError::Conflict(format!(
                    "{address} is the gateway of network {network}; the record holding it was \
                     not made by ipam-gateway and is not changed"
                )));
            }
        }
        let rec = records.into_iter().next().ok_or_else(|| {
            IpamError::NotFound(format!("{address} is not allocated in network {network}"))
        })?;
        let v4 = address.is_ipv4();
        let owner = self.owner_of(&rec.extattrs, rec.comment.as_deref());
        let mut body = Map::new();
        let mut new_name = None;
        if let Some(h) = changes.hostname.as_deref().filter(|h| !h.trim().is_empty()) {
            let name = match &owner {
                Some(o) if self.cfg.record_style != RecordStyle::FixedAddress => {
                    self.record_name(&net, o, Some(h))?
                }
                _ => h.trim().to_owned(),
            };
            body.insert("name".into(), json!(name));
            new_name = Some(name);
        }
        if let Some(d) = &changes.description {
            let comment = match (&owner, self.cfg.owner_marker) {
                (Some(o), OwnerMarker::Comment) => self.comment(o, Some(d)),
                _ => d.clone(),
            };
            body.insert("comment".into(), json!(comment));
        }
        if let Some(m) = &changes.mac {
            match (self.cfg.record_style, v4) {
                (RecordStyle::APtr, _) => {
                    return Err(IpamError::Unsupported(format!(
                        "backend {} keeps A and PTR records (record_style = \"a_ptr\"): \
                         they hold no MAC address",
                        self.name
                    )));
                }
                (_, false) => {
                    return Err(IpamError::invalid(
                        "mac",
                        "Infoblox matches IPv6 host and fixed addresses by DUID, not by MAC; \
                         no MAC is kept for an IPv6 address",
                    ));
                }
                (RecordStyle::Host, true) => {
                    let on = self.cfg.configure_for_dhcp;
                    body.insert(
                        "ipv4addrs".into(),
                        Value::Array(Self::host_entries(
                            &rec,
                            true,
                            |_| true,
                            Some((address, m, on)),
                        )),
                    );
                }
                (RecordStyle::FixedAddress, true) => {
                    body.insert("mac".into(), json!(m.as_str()));
                }
            }
        }
        let inv = self.cached_inventory(cx).await?;
        if body.is_empty() {
            return self
                .allocation(&inv, &rec, address)
                .ok_or_else(|| IpamError::NotFound(format!("{address} in network {network}")));
        }
        let fields = Self::fields_of(rec.object_type());
        let reply = self
            .put(cx, &rec.reference, fields, &Value::Object(body))
            .await?;
        let context = format!("update {}", rec.reference);
        if reply.status == 404 {
            return Err(IpamError::NotFound(format!(
                "{address} is not allocated in network {network}"
            )));
        }
        if !reply.ok() && reply.says("mac") {
            return Err(IpamError::invalid("mac", reply.detail()));
        }
        let updated = self.object_reply(cx, reply, fields, &context).await?;
        if let Some(name) = new_name
            && self.cfg.record_style == RecordStyle::APtr
        {
            let found = self
                .api
                .get_all(
                    cx,
                    "record:ptr",
                    &self.address_filters("record:ptr", &net, address),
                    PTR_FIELDS,
                )
                .await?;
            for p in self.parse_records(found) {
                let reply = self
                    .put(cx, &p.reference, PTR_FIELDS, &json!({"ptrdname": name}))
                    .await?;
                if !reply.ok() {
                    return Err(self.error(&reply, &format!("update {}", p.reference)));
                }
            }
        }
        let mut info = self
            .allocation(&inv, &updated, address)
            .ok_or_else(|| IpamError::NotFound(format!("{address} in network {network}")))?;
        info.network = net.id.clone();
        Ok(info)
    }

    async fn allocate_network(
        &self,
        cx: &CallContext,
        req: &CarveRequest,
    ) -> IpamResult<NetworkInfo> {
        let inv = self.fresh_inventory(cx).await?;
        let block = inv
            .block(&req.block)
            .cloned()
            .ok_or_else(|| IpamError::NotFound(format!("block {}", req.block)))?;
        check_carve_prefix(req.prefix_len, &req.block, &block.cidr, WholeBlock::Refused)?;
        let v4 = Family::of(&block.cidr) == Family::V4;
        let object = if v4 { "network" } else { "ipv6network" };
        let target = match req.subnet {
            Some(net) => {
                let net = net.trunc();
                if !block.cidr.contains(&net) || net.prefix_len() != req.prefix_len {
                    return Err(IpamError::invalid(
                        "subnet",
                        format!(
                            "{net} is not a /{} inside block {}",
                            req.prefix_len, block.cidr
                        ),
                    ));
                }
                net.to_string()
            }
            None => format!(
                "func:nextavailablenetwork:{},{},{}",
                block.cidr, block.view, req.prefix_len
            ),
        };
        let name = req
            .name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| "on-demand network".to_owned());
        let comment = match self.cfg.owner_marker {
            OwnerMarker::Ea => name.trim().to_owned(),
            OwnerMarker::Comment => format!("{} {OWNER_MARK}{}]", name.trim(), req.owner),
        };
        let mut eas = Map::new();
        for (k, v) in &self.cfg.network_filter {
            eas.insert(k.clone(), json!({"value": v}));
        }
        let body = json!({
            "network": target,
            "network_view": block.view,
            "comment": comment,
            "extattrs": self.owner_eas(&req.owner, eas),
        });
        let context = format!(
            "create {object} in container {} (view {})",
            block.cidr, block.view
        );
        let reply = self.post(cx, object, NETWORK_FIELDS, &body).await?;
        if !reply.ok() {
            let e = self.create_error(&reply, &context);
            return Err(match e {
                IpamError::Exhausted(_) => IpamError::Exhausted(format!(
                    "block {} ({}) has no free /{}: {}",
                    req.block,
                    block.cidr,
                    req.prefix_len,
                    reply.detail()
                )),
                other => other,
            });
        }
        let created: Network = match reply.body {
            Value::Object(_) => serde_json::from_value(reply.body)
                .map_err(|e| self.bad_data(&format!("answer to {context}"), e))?,
            Value::String(r) => {
                let got = self
                    .api
                    .get(cx, &r, &[q("_return_fields", NETWORK_FIELDS)])
                    .await?;
                if !got.ok() {
                    return Err(self.error(&got, &format!("read {r}")));
                }
                serde_json::from_value(got.body)
                    .map_err(|e| self.bad_data(&format!("answer to read {r}"), e))?
            }
            other => return Err(self.bad_data(&format!("answer to {context}"), other)),
        };
        let cidr = created
            .cidr()
            .ok_or_else(|| self.bad_data(&format!("answer to {context}"), "no network"))?;
        // DHCP options: the gateway on the first host, DNS as the block has it.
        let (lo, hi) = usable_range(&cidr);
        let gateway = (v4 && lo < hi).then_some(lo);
        let mut options: Vec<DhcpOption> = Vec::new();
        if let Some(gw) = gateway {
            options.push(DhcpOption {
                name: Some("routers".into()),
                num: Some(3),
                value: Some(gw.to_string()),
                use_option: Some(true),
                vendor_class: Some("DHCP".into()),
            });
        }
        for o in &block.options {
            let copy = matches!(
                o.name.as_deref(),
                Some("domain-name-servers" | "domain-name" | "domain-search")
                    | Some("dhcp6.name-servers" | "dhcp6.domain-search")
            );
            if copy && o.use_option != Some(false) {
                options.push(o.clone());
            }
        }
        let finish = async {
            if !options.is_empty() {
                let reply = self
                    .put(
                        cx,
                        &created.reference,
                        NETWORK_FIELDS,
                        &json!({"options": options}),
                    )
                    .await?;
                if !reply.ok() {
                    return Err(self.error(&reply, &format!("set options of {cidr}")));
                }
            }
            if let Some(gw) = gateway {
                let reserve = json!({
                    "ipv4addr": gw.to_string(),
                    "mac": NO_MAC,
                    "network_view": block.view,
                    "comment": "gateway (ipam-gateway)",
                });
                let reply = self
                    .post(cx, "fixedaddress", FIXED4_FIELDS, &reserve)
                    .await?;
                if !reply.ok() {
                    return Err(self.create_error(&reply, &format!("reserve gateway {gw}")));
                }
            }
            Ok(())
        };
        if let Err(e) = finish.await {
            if let Err(undo) = self.delete_ref(cx, &created.reference).await {
                tracing::error!(backend = %self.name, network = %cidr, error = %undo,
                    "could not delete a carved network after setting it up failed");
            }
            return Err(e);
        }
        self.inventory.invalidate(&self.api.scope(cx)).await;
        let net = self
            .to_net(
                Network {
                    network: cidr.to_string(),
                    network_view: Some(block.view.clone()),
                    options,
                    network_container: Some(block.cidr.to_string()),
                    ..created
                },
                &block.view,
                false,
            )
            .ok_or_else(|| self.bad_data("created network", cidr))?;
        let mut info = self.network_info(&inv, &net);
        info.block = Some(block.id.clone());
        info.owner = Some(req.owner.clone());
        info.name = name.trim().to_owned();
        Ok(info)
    }

    async fn release_network(&self, cx: &CallContext, network: &str) -> IpamResult<()> {
        if parse_id(network).is_none() {
            return Err(IpamError::NotFound(format!("network {network}")));
        }
        let inv = self.fresh_inventory(cx).await?;
        let Some(net) = inv.network(network).cloned() else {
            return Ok(());
        };
        if inv.block_of(&net).is_none() {
            return Err(IpamError::Conflict(format!(
                "network {network} was not carved from a block; delete it in Infoblox"
            )));
        }
        let held = self
            .used_in(cx, &net)
            .await?
            .iter()
            .filter(|e| e.addr().is_some_and(|a| !net.is_router(a)))
            .count();
        if held > 0 {
            return Err(IpamError::Conflict(format!(
                "network {network} still holds {held} allocated address(es); release them first"
            )));
        }
        self.delete_ref(cx, &net.reference).await?;
        self.inventory.invalidate(&self.api.scope(cx)).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_with_views_holding_slashes() {
        let cidr: IpNet = "2001:db8:20::/64".parse().expect("cidr");
        let id = net_id("lab/east", &cidr);
        assert_eq!(parse_id(&id), Some(("lab/east".to_owned(), cidr)));
        assert_eq!(parse_id("10.0.0.0/24"), None, "a view is required");
        assert_eq!(parse_id("default/garbage/24"), None);
    }

    #[test]
    fn owner_markers_and_regexes() {
        let (text, owner) = split_owner("web [ipamgw-owner:vra:a.b/nic0]");
        assert_eq!(text, "web");
        assert_eq!(owner.map(String::from).as_deref(), Some("vra:a.b/nic0"));
        assert_eq!(regex_escape("[x:a.b]"), "\\[x:a\\.b\\]");
        let mac = Mac::parse("00:50:56:aa:bb:cc").expect("mac");
        assert_eq!(duid_from_mac(&mac), "00:03:00:01:00:50:56:aa:bb:cc");
        let o = Owner::parse("vra:1/nic1").expect("owner");
        let u = unique_name("web-01.lab.example.com", &o, "default/10.0.0.0/24");
        assert!(
            u.starts_with("web-01-") && u.ends_with(".lab.example.com"),
            "{u}"
        );
        // Names and carved networks already in grids carry these digests (checked with Python's
        // hashlib): `{:x}` writes what the hand-written hex loop wrote.
        assert_eq!(u, "web-01-8f9efb7b.lab.example.com");
        assert_eq!(owner_hash(&o), "4dab76f6");
        assert_ne!(
            unique_name("web-01", &o, "default/10.0.0.0/24"),
            unique_name("web-01", &o, "default/2001:db8::/64")
        );
    }

    fn info(cidr: &str, start: &str, end: &str) -> NetworkInfo {
        let cidr: IpNet = cidr.parse().expect("cidr");
        NetworkInfo::bare(
            net_id("default", &cidr),
            cidr.to_string(),
            cidr,
            (start.parse().expect("start"), end.parse().expect("end")),
        )
    }

    #[test]
    fn free_counts_from_utilization_round_down_and_saturate() {
        // 254 usable addresses; the range (10.20.0.2 – .254) leaves the gateway out.
        let servers = info("10.20.0.0/24", "10.20.0.2", "10.20.0.254");
        assert_eq!(
            free_from_utilization(&servers, 0),
            253,
            "no more than the range"
        );
        assert_eq!(
            free_from_utilization(&servers, 1),
            251,
            "254 × 99 / 100 = 251.46"
        );
        assert_eq!(free_from_utilization(&servers, 50), 127);
        assert_eq!(free_from_utilization(&servers, 100), 0);
        assert_eq!(free_from_utilization(&servers, 200), 0, "clamped");
        // A /29 with its gateway reserved: 1 of 6 used = 16 % on the grid.
        let tiny = info("10.40.0.0/29", "10.40.0.2", "10.40.0.6");
        assert_eq!(free_from_utilization(&tiny, 16), 5, "6 × 84 / 100 = 5.04");
        assert_eq!(free_from_utilization(&tiny, 40), 3, "3.6 rounded down");
        let v6 = info(
            "2001:db8::/64",
            "2001:db8::2",
            "2001:db8::ffff:ffff:ffff:fffe",
        );
        assert_eq!(
            free_from_utilization(&v6, 0),
            u64::MAX - 2,
            "2^64 − 3 in the range"
        );
        let v6 = info(
            "2001:db8::/48",
            "2001:db8::2",
            "2001:db8:0:ffff:ffff:ffff:ffff:fffe",
        );
        assert_eq!(free_from_utilization(&v6, 0), u64::MAX, "saturates");
        let huge = info("::/0", "::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe");
        assert_eq!(free_from_utilization(&huge, 100), 0);
        assert_eq!(free_from_utilization(&huge, 99), u64::MAX, "no overflow");
    }
}
