//! phpIPAM records → domain: a subnet's name and owner (from its description), range, gateway,
//! DNS settings and tags as a `NetworkInfo` or `BlockInfo`, and an address record as an
//! `AllocationInfo`.

use std::net::IpAddr;

use ipnet::IpNet;

use super::PhpipamBackend;
use super::inventory::Inventory;
use super::wire::{Address, Subnet};
use crate::backends::CallContext;
use crate::backends::common::{split_list, split_owner};
use crate::domain::{
    AllocationInfo, BlockInfo, IpamResult, Mac, NetworkInfo, Owner, RecordDetails, Tag,
};
use crate::ipmath::usable_range;

pub(super) use crate::ipmath::next_addr as next_address;

/// First and last address phpIPAM hands out: pools include the network and broadcast
/// addresses; IPv6 subnets skip the subnet-router anycast address (the gateway reserves it).
pub(super) fn range_of(cidr: &IpNet, is_pool: bool) -> (IpAddr, IpAddr) {
    if is_pool {
        (cidr.network(), cidr.broadcast())
    } else {
        usable_range(cidr)
    }
}

impl PhpipamBackend {
    pub(super) fn dns_domain(&self, s: &Subnet) -> Option<String> {
        let f = self.cfg.dns_domain_field.as_deref()?;
        s.field(f)
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
    }

    pub(super) fn search_domains(&self, s: &Subnet) -> Vec<String> {
        self.cfg
            .search_domains_field
            .as_deref()
            .and_then(|f| s.field(f))
            .map(|t| split_list(t, &[]))
            .unwrap_or_default()
    }

    pub(super) fn tags(s: &Subnet) -> Vec<Tag> {
        s.tags.clone()
    }

    pub(super) async fn network_info(
        &self,
        cx: &CallContext,
        inv: &Inventory,
        s: &Subnet,
    ) -> IpamResult<Option<NetworkInfo>> {
        let Some(cidr) = s.cidr() else {
            return Ok(None);
        };
        let (mut range_start, range_end) = range_of(&cidr, s.is_pool);
        let (name, owner) = split_owner(s.description.as_deref().unwrap_or_default());
        let parent = s.master_subnet_id.and_then(|m| inv.block(m));
        let block = parent.map(|b| b.id.to_string());
        let gateway = self.gateway_ip(cx, s).await?;
        // A carved network is described as `allocate_network` described it: its gateway on the
        // first host and the range after it, and the block's DNS settings where the subnet has
        // none of its own (phpIPAM does not copy custom fields into the subnets it carves).
        if parent.is_some() && gateway == Some(range_start) && range_start < range_end {
            range_start = next_address(range_start);
        }
        let mut dns_servers = s.dns_servers();
        let mut dns_domain = self.dns_domain(s);
        let mut dns_search_domains = self.search_domains(s);
        if let Some(p) = parent {
            if dns_servers.is_empty() {
                dns_servers = p.dns_servers();
            }
            if dns_domain.is_none() {
                dns_domain = self.dns_domain(p);
            }
            if dns_search_domains.is_empty() {
                dns_search_domains = self.search_domains(p);
            }
        }
        Ok(Some(NetworkInfo {
            backend_id: s.id.to_string(),
            name: if name.is_empty() {
                cidr.to_string()
            } else {
                name
            },
            description: s.description.clone(),
            cidr,
            range_start,
            range_end,
            gateway,
            dns_servers,
            dns_domain,
            dns_search_domains,
            address_space: inv.space(s),
            vlan: self.vlan_number(cx, s).await?,
            tags: Self::tags(s),
            free: s.free_hosts(),
            owner: block.as_ref().and(owner),
            block,
        }))
    }

    pub(super) fn block_info(&self, inv: &Inventory, s: &Subnet) -> Option<BlockInfo> {
        let cidr = s.cidr()?;
        let (name, _) = split_owner(s.description.as_deref().unwrap_or_default());
        Some(BlockInfo {
            backend_id: s.id.to_string(),
            name: if name.is_empty() {
                cidr.to_string()
            } else {
                name
            },
            description: s.description.clone(),
            cidr,
            address_space: inv.space(s),
            gateway: None,
            dns_servers: s.dns_servers(),
            dns_domain: self.dns_domain(s),
            dns_search_domains: self.search_domains(s),
            tags: Self::tags(s),
        })
    }

    pub(super) fn allocation(&self, a: &Address) -> Option<AllocationInfo> {
        Some(AllocationInfo {
            network: a.subnet_id?.to_string(),
            address: a.addr()?,
            owner: a
                .text_field(&self.cfg.owner_field)
                .and_then(|o| Owner::parse(&o).ok()),
            details: RecordDetails {
                aliases: super::addresses::noted_names(a.text_field("note").as_deref()),
                hostname: a.hostname.clone(),
                description: a.description.clone(),
                mac: a.mac.as_deref().and_then(|m| Mac::parse(m).ok()),
            },
            reference: Some(a.id.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_expose_network_and_broadcast() {
        let net: IpNet = "10.50.0.0/29".parse().expect("net");
        assert_eq!(
            range_of(&net, true),
            (
                "10.50.0.0".parse().expect("a"),
                "10.50.0.7".parse().expect("b")
            )
        );
        assert_eq!(
            range_of(&net, false),
            (
                "10.50.0.1".parse().expect("a"),
                "10.50.0.6".parse().expect("b")
            )
        );
    }
}
