//! On-demand networks carved from blocks: `func:nextavailablenetwork` (or the subnet asked for)
//! in a block's container, then its `routers` option, the block's DNS options and a
//! reservation for the gateway; release deletes a carved network that holds nothing.

use serde_json::{Map, Value, json};

use super::config::OwnerMarker;
use super::ids::parse_id;
use super::wire::{DhcpOption, Network};
use super::{FIXED4_FIELDS, InfobloxBackend, NETWORK_FIELDS, NO_MAC, q};
use crate::backends::CallContext;
use crate::backends::common::{
    carved_name, not_carved, owner_marker, still_holds, subnet_in_block,
};
use crate::domain::{CarveRequest, Family, IpamError, IpamResult, NetworkInfo};
use crate::ipmath::{WholeBlock, check_carve_prefix, usable_range};

impl InfobloxBackend {
    pub(super) async fn carve_network(
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
            Some(net) => subnet_in_block(&block.cidr, net, req.prefix_len)?.to_string(),
            None => format!(
                "func:nextavailablenetwork:{},{},{}",
                block.cidr, block.view, req.prefix_len
            ),
        };
        let name = carved_name(req);
        let comment = match self.cfg.owner_marker {
            OwnerMarker::Ea => name.trim().to_owned(),
            OwnerMarker::Comment => format!("{} {}", name.trim(), owner_marker(&req.owner)),
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

    pub(super) async fn release_carved(&self, cx: &CallContext, network: &str) -> IpamResult<()> {
        if parse_id(network).is_none() {
            return Err(IpamError::NotFound(format!("network {network}")));
        }
        let inv = self.fresh_inventory(cx).await?;
        let Some(net) = inv.network(network).cloned() else {
            return Ok(());
        };
        if inv.block_of(&net).is_none() {
            return Err(not_carved(network, "Infoblox"));
        }
        let held = self
            .used_in(cx, &net)
            .await?
            .iter()
            .filter(|e| e.addr().is_some_and(|a| !net.is_router(a)))
            .count();
        if held > 0 {
            return Err(still_holds(network, held));
        }
        self.delete_ref(cx, &net.reference).await?;
        self.inventory.invalidate(&self.api.scope(cx)).await;
        Ok(())
    }
}
