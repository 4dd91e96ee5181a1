//! WAPI objects → domain: gateway, routers, DNS settings, VLAN, owner and tags of a network,
//! and the `NetworkInfo`, `BlockInfo` and `AllocationInfo` the gateway answers with; free counts
//! from a network's `utilization`.

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::config::OwnerMarker;
use super::inventory::{Inventory, Net};
use super::wire::{Network, Record, ea_text};
use super::{InfobloxBackend, NO_MAC};
use crate::backends::common::{split_list, split_owner};
use crate::domain::{AllocationInfo, BlockInfo, Mac, NetworkInfo, Owner, RecordDetails, Tag};
use crate::ipmath::usable_range;

/// Addresses from `lo` to `hi`, saturating at `u128::MAX`.
pub(super) fn span(lo: IpAddr, hi: IpAddr) -> u128 {
    let num = |a: IpAddr| match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    };
    num(hi).saturating_sub(num(lo)).saturating_add(1)
}

/// Addresses in a network's range (the gateway excluded when it starts it).
pub(super) fn range_size(info: &NetworkInfo) -> u128 {
    span(info.range_start, info.range_end)
}

/// The free addresses a utilization (percent, 0..=100) leaves: the network's usable addresses
/// (network and broadcast excluded; the grid counts a reserved gateway as used) × (100 −
/// utilization) / 100, rounded down, and never more than the range holds (saturating for large
/// IPv6 networks). Approximate: NIOS refreshes utilization periodically, not on every change.
pub(super) fn free_from_utilization(info: &NetworkInfo, percent: u8) -> u64 {
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

/// What list values (DHCP option values) are stripped of: they may come quoted.
const QUOTES: &[char] = &['"'];

impl InfobloxBackend {
    /// The DHCP `routers` option, else the `gateway_ea` extensible attribute.
    pub(super) fn gateway(&self, n: &Network) -> Option<IpAddr> {
        n.option(&["routers"])
            .and_then(|v| {
                split_list(v, QUOTES)
                    .into_iter()
                    .find_map(|s| s.parse().ok())
            })
            .or_else(|| {
                n.extattrs
                    .get(&self.cfg.gateway_ea)
                    .and_then(ea_text)
                    .and_then(|t| t.trim().parse().ok())
            })
    }

    /// Every router address a network names: all values of its `routers` option, and the
    /// `gateway_ea` extensible attribute.
    pub(super) fn router_addresses(&self, n: &Network) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = n
            .option(&["routers"])
            .map(|v| {
                split_list(v, QUOTES)
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

    pub(super) fn vlan(&self, n: &Network) -> Option<u16> {
        n.extattrs
            .get(&self.cfg.vlan_ea)
            .and_then(ea_text)
            .and_then(|t| t.trim().parse().ok())
    }

    pub(super) fn dns_servers(n: &Network) -> Vec<IpAddr> {
        let from_option: Vec<IpAddr> = n
            .option(&["domain-name-servers", "dhcp6.name-servers"])
            .map(|v| {
                split_list(v, QUOTES)
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

    pub(super) fn dns_domain(n: &Network) -> Option<String> {
        n.option(&["domain-name"])
            .or(n.domain_name.as_deref())
            .map(|d| d.trim().trim_matches('"').to_owned())
            .filter(|d| !d.is_empty())
    }

    pub(super) fn search_domains(n: &Network) -> Vec<String> {
        n.option(&["domain-search", "dhcp6.domain-search"])
            .map(|v| split_list(v, QUOTES))
            .unwrap_or_default()
    }

    pub(super) fn owner_of(
        &self,
        extattrs: &Map<String, Value>,
        comment: Option<&str>,
    ) -> Option<Owner> {
        match self.cfg.owner_marker {
            OwnerMarker::Ea => extattrs
                .get(&self.cfg.owner_ea)
                .and_then(ea_text)
                .and_then(|o| Owner::parse(&o).ok()),
            OwnerMarker::Comment => split_owner(comment.unwrap_or_default()).1,
        }
    }

    pub(super) fn tags(&self, n: &Network) -> Vec<Tag> {
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

    pub(super) fn network_info(&self, inv: &Inventory, n: &Net) -> NetworkInfo {
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

    pub(super) fn block_info(&self, b: &Net) -> BlockInfo {
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
    pub(super) fn allocation(
        &self,
        inv: &Inventory,
        rec: &Record,
        addr: IpAddr,
    ) -> Option<AllocationInfo> {
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
                // Not kept on Infoblox: its records register DNS themselves (a `[dns]` section
                // is refused on such a backend), so the gateway has no names to find again; the
                // Avi description and `record_info.fqdns` still name them.
                aliases: Vec::new(),
                hostname: rec.name.clone().filter(|n| !n.is_empty()),
                description: (!description.is_empty()).then_some(description),
                mac,
            },
            reference: Some(rec.reference.clone()),
        })
    }
}
#[cfg(test)]
mod tests {
    use ipnet::IpNet;

    use super::*;
    use crate::backends::infoblox::ids::net_id;

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
