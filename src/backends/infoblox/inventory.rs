//! The exposed networks and blocks: the paged searches of each network view (networks carrying
//! every `network_filter` attribute, containers picked by CIDR or `block_filter`), what the
//! gateway keeps of each object ([`Net`]), the inventory remembered for allocation routing, and
//! the listings with their free counts.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use ipnet::IpNet;
use serde_json::{Value, json};

use super::config::{FreeCounts, OwnerMarker};
use super::ids::{net_id, parse_id};
use super::mapping::{free_from_utilization, range_size};
use super::wire::{self, DhcpOption, IpAddressEntry, Network, ea_text};
use super::{
    ADDRESS_FIELDS, InfobloxBackend, NETWORK_FIELDS, NETWORK_FIELDS_UTILIZATION, V6_NETWORK_FIELDS,
    q,
};
use crate::backends::CallContext;
use crate::backends::common::{not_exposed, split_owner};
use crate::domain::{BlockInfo, Family, IpamError, IpamResult, NetworkInfo, Owner, Tag};

/// A network or container of an exposed view: what the gateway reads of the WAPI object, not
/// the object itself (an inventory holds 10,000 of these).
#[derive(Debug, Clone)]
pub(super) struct Net {
    pub(super) id: String,
    pub(super) cidr: IpNet,
    pub(super) view: String,
    /// The object's `_ref`.
    pub(super) reference: String,
    /// The parent container's CIDR (`network_container`), host bits cleared.
    pub(super) container: Option<IpNet>,
    pub(super) comment: Option<String>,
    pub(super) gateway: Option<IpAddr>,
    /// Further router addresses the network names (more `routers` values, a `gateway_ea` that
    /// differs from the option): never handed out either. Empty, so no allocation, for the
    /// usual single router.
    pub(super) other_routers: Box<[IpAddr]>,
    pub(super) dns_servers: Vec<IpAddr>,
    pub(super) dns_domain: Option<String>,
    pub(super) search_domains: Vec<String>,
    pub(super) vlan: Option<u16>,
    pub(super) tags: Vec<Tag>,
    /// The owner marker (`owner_marker`: the owner extensible attribute, or the comment's).
    pub(super) owner: Option<Owner>,
    /// `utilization` in percent, when asked for and sent.
    pub(super) utilization: Option<u8>,
    /// Blocks only: the DHCP options networks carved from it inherit.
    pub(super) options: Vec<DhcpOption>,
}

impl Net {
    /// Is `addr` a router address of the network (never handed out)?
    pub(super) fn is_router(&self, addr: IpAddr) -> bool {
        self.gateway == Some(addr) || self.other_routers.contains(&addr)
    }

    /// The router addresses inside the network: what `next_available_ip` must exclude.
    pub(super) fn routers(&self) -> Vec<IpAddr> {
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
    pub(super) fn next_available_ip(&self) -> Value {
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
pub(super) fn net_order<'a>(view: &'a str, cidr: &IpNet) -> (&'a str, bool, IpNet) {
    (view, Family::of(cidr) == Family::V6, *cidr)
}

#[derive(Debug, Default)]
pub(super) struct Inventory {
    /// Sorted by view, family and CIDR (see [`net_order`]).
    pub(super) networks: Vec<Net>,
    pub(super) blocks: Vec<Net>,
}

impl Inventory {
    pub(super) fn network(&self, id: &str) -> Option<&Net> {
        let (view, cidr) = parse_id(id)?;
        let key = net_order(&view, &cidr);
        let at = self
            .networks
            .binary_search_by(|n| net_order(&n.view, &n.cidr).cmp(&key))
            .ok()?;
        self.networks.get(at).filter(|n| n.id == id)
    }

    pub(super) fn block(&self, id: &str) -> Option<&Net> {
        self.blocks.iter().find(|n| n.id == id)
    }

    /// The block a network was carved from: a block container of its view whose CIDR is its
    /// `network_container`.
    pub(super) fn block_of(&self, n: &Net) -> Option<&Net> {
        let parent = n.container?;
        self.blocks
            .iter()
            .find(|b| b.view == n.view && b.cidr == parent)
    }

    /// The exposed network holding `addr` (in `view` when known; the most specific one).
    pub(super) fn holding(&self, addr: IpAddr, view: Option<&str>) -> Option<&Net> {
        self.networks
            .iter()
            .filter(|n| n.cidr.contains(&addr) && view.is_none_or(|v| v == n.view))
            .max_by_key(|n| n.cidr.prefix_len())
    }
}

impl InfobloxBackend {
    pub(super) fn read_network(&self, v: Value) -> Option<Network> {
        wire::parse("network", v)
            .map_err(|e| {
                tracing::warn!(backend = %self.name, error = %e,
                    "skipping an Infoblox network that cannot be read");
            })
            .ok()
    }

    /// What the gateway keeps of a network (`keep_options`: the DHCP options too, for blocks).
    pub(super) fn to_net(&self, wire: Network, view: &str, keep_options: bool) -> Option<Net> {
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
    pub(super) fn listed_net(&self, v: Value, view: &str) -> Option<Net> {
        let wire = self.read_network(v)?;
        self.to_net(wire, view, false)
    }

    pub(super) fn eas_match(wire: &Network, filter: &[(String, String)]) -> bool {
        filter.iter().all(|(k, v)| {
            wire.extattrs
                .get(k)
                .and_then(ea_text)
                .is_some_and(|t| t.split(',').any(|x| x == v))
        })
    }

    pub(super) async fn load_inventory(&self, cx: &CallContext) -> IpamResult<Inventory> {
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
    pub(super) async fn ipv4_networks<T>(
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

    pub(super) async fn fresh_inventory(&self, cx: &CallContext) -> IpamResult<Arc<Inventory>> {
        self.inventory
            .fresh(self.api.scope(cx), self.load_inventory(cx))
            .await
    }

    pub(super) async fn cached_inventory(&self, cx: &CallContext) -> IpamResult<Arc<Inventory>> {
        self.inventory
            .cached(self.api.scope(cx), self.load_inventory(cx))
            .await
    }

    /// An exposed network by id; reloads the inventory once when it is not known.
    pub(super) async fn exposed_network(&self, cx: &CallContext, network: &str) -> IpamResult<Net> {
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
            .ok_or_else(|| not_exposed(network, &self.name))
    }

    pub(super) async fn list_networks(&self, cx: &CallContext) -> IpamResult<Vec<NetworkInfo>> {
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

    pub(super) async fn list_blocks(&self, cx: &CallContext) -> IpamResult<Vec<BlockInfo>> {
        let inv = self.cached_inventory(cx).await?;
        Ok(inv.blocks.iter().map(|b| self.block_info(b)).collect())
    }

    /// Addresses of the network's range that nothing uses (saturating for large IPv6 networks).
    pub(super) async fn free_in(
        &self,
        cx: &CallContext,
        net: &Net,
        info: &NetworkInfo,
    ) -> IpamResult<u64> {
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

    pub(super) async fn used_in(
        &self,
        cx: &CallContext,
        net: &Net,
    ) -> IpamResult<Vec<IpAddressEntry>> {
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
