//! On-demand networks carved from blocks: `POST subnets/{block}/first_subnet/{mask}/` (or the
//! subnet asked for), a gateway address on the first host, the owner kept in the description;
//! release deletes a carved subnet that holds nothing but its gateway.

use ipnet::IpNet;
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::limits::{ADDRESS_DESCRIPTION, SUBNET_DESCRIPTION};
use super::mapping::next_address;
use super::wire::{Address, list, value_text};
use super::{GATEWAY_DESCRIPTION, PhpipamBackend, parse_id};
use crate::backends::CallContext;
use crate::backends::common::{
    carved_name, not_carved, owner_marker, still_holds, subnet_in_block,
};
use crate::domain::{CarveRequest, IpamError, IpamResult, NetworkInfo};
use crate::ipmath::{WholeBlock, check_carve_prefix, usable_range};

impl PhpipamBackend {
    pub(super) async fn delete_subnet(&self, cx: &CallContext, id: u64) -> IpamResult<()> {
        let reply = self
            .api
            .send(cx, Method::DELETE, &format!("subnets/{id}/"), &[], None)
            .await?;
        match reply.status {
            200 | 204 | 404 => Ok(()),
            400 if reply.says("invalid subnet") => Ok(()),
            _ => Err(self.upstream(&reply)),
        }
    }

    pub(super) async fn carve_network(
        &self,
        cx: &CallContext,
        req: &CarveRequest,
    ) -> IpamResult<NetworkInfo> {
        let block_id = parse_id("block", &req.block)?;
        let inv = self.fresh_inventory(cx).await?;
        let block = inv
            .block(block_id)
            .ok_or_else(|| IpamError::NotFound(format!("block {}", req.block)))?;
        let block_cidr = block
            .cidr()
            .ok_or_else(|| IpamError::NotFound(format!("block {}", req.block)))?;
        check_carve_prefix(req.prefix_len, &req.block, &block_cidr, WholeBlock::Refused)?;
        let name = carved_name(req);
        // The owner marker is read back to find the network again: it is kept whole, the name
        // before it is shortened if the two do not fit phpIPAM's `subnets.description`.
        let marker = format!(" {}", owner_marker(&req.owner));
        let name = SUBNET_DESCRIPTION
            .shorten_before(name.trim(), &marker)
            .into_owned();
        let description = format!("{name}{marker}");
        let mut body = Map::new();
        body.insert("description".into(), json!(description));
        if let Some(ns) = block.nameserver_id
            && ns > 0
        {
            body.insert("nameserverId".into(), json!(ns.to_string()));
        }
        let reply = match req.subnet {
            Some(net) => {
                let net = subnet_in_block(&block_cidr, net, req.prefix_len)?;
                body.insert("subnet".into(), json!(net.network().to_string()));
                body.insert("mask".into(), json!(net.prefix_len().to_string()));
                body.insert("masterSubnetId".into(), json!(block_id.to_string()));
                if let Some(section) = block.section_id {
                    body.insert("sectionId".into(), json!(section.to_string()));
                }
                self.api
                    .send(
                        cx,
                        Method::POST,
                        "subnets/",
                        &[],
                        Some(&Value::Object(body)),
                    )
                    .await?
            }
            None => {
                self.api
                    .send(
                        cx,
                        Method::POST,
                        &format!("subnets/{block_id}/first_subnet/{}/", req.prefix_len),
                        &[],
                        Some(&Value::Object(body)),
                    )
                    .await?
            }
        };
        let id = match reply.status {
            201 | 200 => reply
                .env
                .id
                .ok_or_else(|| self.bad_data("subnet create answer", "no subnet id"))?,
            404 if reply.says("no subnets found") => {
                return Err(IpamError::Exhausted(format!(
                    "block {} ({block_cidr}) has no free /{}",
                    req.block, req.prefix_len
                )));
            }
            409 => {
                return Err(IpamError::Conflict(format!("phpIPAM: {}", reply.message())));
            }
            _ => return Err(self.upstream(&reply)),
        };
        let cidr: IpNet = match req.subnet {
            Some(net) => net.trunc(),
            None => reply
                .env
                .data
                .as_ref()
                .and_then(value_text)
                .and_then(|t| t.trim().parse::<IpNet>().ok())
                .map(|n| n.trunc())
                .ok_or_else(|| self.bad_data("subnet create answer", "no CIDR"))?,
        };
        let (lo, hi) = usable_range(&cidr);
        let gateway = if lo < hi { Some(lo) } else { None };
        if let Some(gw) = gateway {
            let body = json!({
                "ip": gw.to_string(),
                "subnetId": id.to_string(),
                "is_gateway": "1",
                "description": ADDRESS_DESCRIPTION.shorten(GATEWAY_DESCRIPTION),
            });
            let created = self
                .api
                .send(cx, Method::POST, "addresses/", &[], Some(&body))
                .await;
            let failure = match created {
                Ok(r) if r.ok() => None,
                Ok(r) => Some(self.upstream(&r)),
                Err(e) => Some(e),
            };
            if let Some(e) = failure {
                if let Err(undo) = self.delete_subnet(cx, id).await {
                    tracing::error!(backend = %self.name, subnet = id, error = %undo,
                        "could not delete a carved subnet after its gateway failed");
                }
                return Err(e);
            }
        }
        self.inventory.invalidate(&self.api.scope(cx)).await;
        let range_start = gateway.map_or(lo, next_address);
        Ok(NetworkInfo {
            backend_id: id.to_string(),
            name: name.trim().to_owned(),
            description: Some(description),
            cidr,
            range_start: if range_start <= hi { range_start } else { lo },
            range_end: hi,
            gateway,
            dns_servers: block.dns_servers(),
            dns_domain: self.dns_domain(block),
            dns_search_domains: self.search_domains(block),
            address_space: inv.space(block),
            vlan: None,
            tags: Self::tags(block),
            free: None,
            block: Some(block_id.to_string()),
            owner: Some(req.owner.clone()),
        })
    }

    pub(super) async fn release_carved(&self, cx: &CallContext, network: &str) -> IpamResult<()> {
        let id = parse_id("network", network)?;
        let inv = self.fresh_inventory(cx).await?;
        let Some(subnet) = inv.network(id) else {
            // Gone already (or never ours to see): nothing to delete.
            return Ok(());
        };
        let carved = subnet
            .master_subnet_id
            .is_some_and(|m| inv.block(m).is_some());
        if !carved {
            return Err(not_carved(network, "phpIPAM"));
        }
        let reply = self
            .api
            .get(cx, &format!("subnets/{id}/addresses/"), &[])
            .await?;
        let held = match reply.status {
            200 => list(reply.env.data)
                .into_iter()
                .filter_map(|v| Address::from_value(v).ok())
                .filter(|a| !a.is_gateway)
                .count(),
            404 | 400 => 0,
            _ => return Err(self.upstream(&reply)),
        };
        if held > 0 {
            return Err(still_holds(network, held));
        }
        self.delete_subnet(cx, id).await?;
        self.inventory.invalidate(&self.api.scope(cx)).await;
        Ok(())
    }
}
