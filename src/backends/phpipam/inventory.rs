//! The exposed subnets and blocks: the sections' subnet listings filtered by the `networks` and
//! `blocks` selectors, the inventory remembered for allocation routing, and the gateway address
//! and VLAN lookups (remembered for `lookup_cache_secs`) a listing needs.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use super::config::{SectionRef, SubnetSelector};
use super::wire::{self, Address, Section, Subnet, Vlan, list};
use super::{LOOKUPS_ONE_BY_ONE, PhpipamBackend, parse_id};
use crate::backends::CallContext;
use crate::backends::common::not_exposed;
use crate::domain::{BlockInfo, IpamResult, NetworkInfo};

/// What the configured selectors expose, for one caller scope.
#[derive(Debug, Default)]
pub(super) struct Inventory {
    pub(super) sections: HashMap<u64, String>,
    pub(super) missing_sections: Vec<String>,
    pub(super) networks: Vec<Subnet>,
    /// Subnet id → index in `networks`.
    pub(super) by_id: HashMap<u64, usize>,
    pub(super) blocks: Vec<Subnet>,
}

impl Inventory {
    pub(super) fn network(&self, id: u64) -> Option<&Subnet> {
        self.by_id.get(&id).and_then(|i| self.networks.get(*i))
    }

    pub(super) fn block(&self, id: u64) -> Option<&Subnet> {
        self.blocks.iter().find(|s| s.id == id)
    }

    pub(super) fn space(&self, s: &Subnet) -> String {
        s.section_id
            .map(|id| {
                self.sections
                    .get(&id)
                    .cloned()
                    .unwrap_or_else(|| format!("section-{id}"))
            })
            .unwrap_or_else(|| "default".to_owned())
    }
}

fn selector_matches(sel: &SubnetSelector, s: &Subnet) -> bool {
    if sel.ids.contains(&s.id) {
        return true;
    }
    match &sel.field {
        Some((field, value)) => s.field(field).is_some_and(|v| v.trim() == value),
        None => false,
    }
}

impl PhpipamBackend {
    /// The fields of a subnet record the backend reads by name: the selectors' fields and the
    /// DNS fields (custom fields are kept anyway, as tags).
    pub(super) fn subnet_fields(&self) -> Vec<&str> {
        [
            self.cfg.networks.field.as_ref().map(|(f, _)| f.as_str()),
            self.cfg.blocks.field.as_ref().map(|(f, _)| f.as_str()),
            self.cfg.dns_domain_field.as_deref(),
            self.cfg.search_domains_field.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    pub(super) async fn load_inventory(&self, cx: &CallContext) -> IpamResult<Inventory> {
        let reply = self.api.get(cx, "sections/", &[]).await?;
        let sections: Vec<Section> = match reply.status {
            200 => list(reply.env.data)
                .into_iter()
                .map(serde_json::from_value)
                .collect::<Result<_, _>>()
                .map_err(|e| self.bad_data("section list", e))?,
            404 => Vec::new(),
            _ => return Err(self.upstream(&reply)),
        };
        let mut inv = Inventory {
            sections: sections
                .iter()
                .map(|s| (s.id, s.name.clone().unwrap_or_else(|| s.id.to_string())))
                .collect(),
            ..Inventory::default()
        };
        let mut chosen: Vec<u64> = Vec::new();
        if self.cfg.sections.is_empty() {
            chosen = sections.iter().map(|s| s.id).collect();
        } else {
            for want in &self.cfg.sections {
                let found = sections.iter().find(|s| match want {
                    SectionRef::Id(id) => s.id == *id,
                    SectionRef::Name(n) => s.name.as_deref() == Some(n.trim()),
                });
                match found {
                    Some(s) if !chosen.contains(&s.id) => chosen.push(s.id),
                    Some(_) => {}
                    None => inv.missing_sections.push(match want {
                        SectionRef::Id(id) => id.to_string(),
                        SectionRef::Name(n) => n.clone(),
                    }),
                }
            }
        }
        let mut subnets = Vec::new();
        let fields = self.subnet_fields();
        // Each subnet is read into what the gateway keeps of it as it is parsed: the listing
        // never exists as one JSON tree.
        let read = |body: &[u8]| wire::subnet_list(body, &fields);
        for id in chosen {
            let reply = self
                .api
                .get_with(cx, &format!("sections/{id}/subnets/"), &[], &read)
                .await?;
            match reply.status {
                200 => {
                    for s in reply.env.data.unwrap_or_default() {
                        match s {
                            Ok(s) if !s.is_folder && s.cidr().is_some() => subnets.push(s),
                            Ok(_) => {}
                            Err(e) => tracing::warn!(backend = %self.name, error = %e,
                                "skipping a phpIPAM subnet that cannot be read"),
                        }
                    }
                }
                404 => {}
                _ => return Err(self.upstream(&reply)),
            }
        }
        let (blocks, rest): (Vec<Subnet>, Vec<Subnet>) = subnets
            .into_iter()
            .partition(|s| selector_matches(&self.cfg.blocks, s));
        let block_ids: HashSet<u64> = blocks.iter().map(|b| b.id).collect();
        inv.networks = rest
            .into_iter()
            .filter(|s| {
                self.cfg.networks.is_empty()
                    || selector_matches(&self.cfg.networks, s)
                    || s.master_subnet_id.is_some_and(|m| block_ids.contains(&m))
            })
            .collect();
        inv.networks.shrink_to_fit();
        inv.by_id = inv
            .networks
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id, i))
            .collect();
        inv.blocks = blocks;
        Ok(inv)
    }

    /// A fresh inventory, also remembered for allocation routing.
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

    /// An exposed network by backend id; reloads the inventory once when it is not known.
    pub(super) async fn exposed_network(
        &self,
        cx: &CallContext,
        network: &str,
    ) -> IpamResult<Subnet> {
        let id = parse_id("network", network)?;
        if let Some(s) = self.cached_inventory(cx).await?.network(id) {
            return Ok(s.clone());
        }
        self.fresh_inventory(cx)
            .await?
            .network(id)
            .cloned()
            .ok_or_else(|| not_exposed(network, &self.name))
    }

    /// Fills the gateway and VLAN caches for a listing of `subnets` with a number of requests
    /// that does not grow with the number of subnets. Looked up one by one, a cold listing of
    /// 1,000 subnets was 1,000 `GET addresses/{id}/` (and as many `GET vlan/{id}/`) in a row.
    ///
    /// Gateways come from one `GET addresses/?filter_by=is_gateway&filter_value=1` (fixture
    /// 152: every gateway address of every subnet, with `id`, `subnetId` and `ip`). phpIPAM
    /// reads every address row to answer it (it filters in PHP, `api/controllers/Common.php`
    /// `filter_result`), so it costs what the whole IPAM holds — but once per listing, not once
    /// per subnet; a single missing gateway (a subnet added since the last listing) is still
    /// looked up by id, one request and one row. `GET subnets/` is not used although it carries
    /// `gateway: {ip_addr, id}` per subnet: phpIPAM 1.8.2 files the gateways under their
    /// *address* id instead of their subnet id (`api/controllers/Subnets.php`
    /// `read_all_subnets`), so subnets get another subnet's gateway or none (fixture 30: subnet
    /// 11 shows 10.10.0.1 of subnet 7, and 7 and 9 show none); it also reads every subnet of
    /// every section. VLANs come from one `GET vlan/` (a small table).
    pub(super) async fn prefetch_lookups(
        &self,
        cx: &CallContext,
        subnets: &[Subnet],
    ) -> IpamResult<()> {
        let gateways: HashSet<u64> = subnets
            .iter()
            .filter_map(|s| s.gateway_id.filter(|id| *id > 0))
            .filter(|id| !self.gateways.contains_key(id))
            .collect();
        if gateways.len() > LOOKUPS_ONE_BY_ONE {
            self.load_gateways(cx, &gateways).await?;
        }
        let vlans: HashSet<u64> = subnets
            .iter()
            .filter_map(|s| s.vlan_id.filter(|id| *id > 0))
            .filter(|id| !self.vlans.contains_key(id))
            .collect();
        if vlans.len() > LOOKUPS_ONE_BY_ONE {
            self.load_vlans(cx, &vlans).await?;
        }
        Ok(())
    }

    /// Every gateway address, remembered by address id. An id that is not among them (no longer
    /// a gateway, or deleted since the subnets were read) stays unknown and is looked up by id.
    pub(super) async fn load_gateways(
        &self,
        cx: &CallContext,
        wanted: &HashSet<u64>,
    ) -> IpamResult<()> {
        let reply = self
            .api
            .get(
                cx,
                "addresses/",
                &[("filter_by", "is_gateway"), ("filter_value", "1")],
            )
            .await?;
        let found: Vec<Address> = match reply.status {
            200 => list(reply.env.data)
                .into_iter()
                .filter_map(|v| Address::from_value(v).ok())
                .collect(),
            // "No results (filter applied)": the gateways were unset since the listing.
            404 if reply.says("no results") => Vec::new(),
            _ => return Err(self.upstream(&reply)),
        };
        for a in found {
            if a.is_gateway && wanted.contains(&a.id) {
                self.gateways.insert(a.id, a.addr()).await;
            }
        }
        Ok(())
    }

    /// Every VLAN's number, remembered by VLAN id; ids not listed stay unknown.
    pub(super) async fn load_vlans(
        &self,
        cx: &CallContext,
        wanted: &HashSet<u64>,
    ) -> IpamResult<()> {
        let reply = self.api.get(cx, "vlan/", &[]).await?;
        let found: Vec<Vlan> = match reply.status {
            200 => list(reply.env.data)
                .into_iter()
                .filter_map(|v| serde_json::from_value::<Vlan>(v).ok())
                .collect(),
            // "No vlans configured" (`api/controllers/Vlans.php` `GET()`): deleted since.
            404 if reply.says("no vlans") => Vec::new(),
            _ => return Err(self.upstream(&reply)),
        };
        for v in found {
            if let Some(id) = v.id.filter(|id| wanted.contains(id)) {
                let number = v.number.and_then(|n| u16::try_from(n).ok());
                self.vlans.insert(id, number).await;
            }
        }
        Ok(())
    }

    pub(super) async fn gateway_ip(
        &self,
        cx: &CallContext,
        s: &Subnet,
    ) -> IpamResult<Option<IpAddr>> {
        let Some(gw_id) = s.gateway_id.filter(|id| *id > 0) else {
            return Ok(None);
        };
        self.gateways
            .try_get_with(gw_id, async {
                let reply = self
                    .api
                    .get(cx, &format!("addresses/{gw_id}/"), &[])
                    .await?;
                match reply.status {
                    200 => Ok(reply
                        .env
                        .data
                        .and_then(|d| Address::from_value(d).ok())
                        .and_then(|a| a.addr())),
                    404 => Ok(None),
                    _ => Err(self.upstream(&reply)),
                }
            })
            .await
            .map_err(|e| (*e).clone())
    }

    pub(super) async fn vlan_number(
        &self,
        cx: &CallContext,
        s: &Subnet,
    ) -> IpamResult<Option<u16>> {
        let Some(vlan_id) = s.vlan_id.filter(|id| *id > 0) else {
            return Ok(None);
        };
        self.vlans
            .try_get_with(vlan_id, async {
                let reply = self.api.get(cx, &format!("vlan/{vlan_id}/"), &[]).await?;
                match reply.status {
                    200 => Ok(reply
                        .env
                        .data
                        .and_then(|d| serde_json::from_value::<Vlan>(d).ok())
                        .and_then(|v| v.number)
                        .and_then(|n| u16::try_from(n).ok())),
                    404 | 400 => Ok(None),
                    _ => Err(self.upstream(&reply)),
                }
            })
            .await
            .map_err(|e| (*e).clone())
    }

    pub(super) async fn list_networks(&self, cx: &CallContext) -> IpamResult<Vec<NetworkInfo>> {
        let inv = self.fresh_inventory(cx).await?;
        self.prefetch_lookups(cx, &inv.networks).await?;
        let mut out = Vec::with_capacity(inv.networks.len());
        for s in &inv.networks {
            if let Some(n) = self.network_info(cx, &inv, s).await? {
                out.push(n);
            }
        }
        Ok(out)
    }

    pub(super) async fn list_blocks(&self, cx: &CallContext) -> IpamResult<Vec<BlockInfo>> {
        let inv = self.cached_inventory(cx).await?;
        Ok(inv
            .blocks
            .iter()
            .filter_map(|b| self.block_info(&inv, b))
            .collect())
    }
}
