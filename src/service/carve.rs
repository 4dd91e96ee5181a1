//! On-demand networks: carving one from a block (idempotent per owner and block) and deleting
//! it.

use super::locks::LockKey;
use super::{Caller, Ipam, timed};
use crate::domain::{CarveRequest, IpamError, IpamResult, Network, NetworkId, Owner};

impl Ipam {
    /// Carves a network from a block; idempotent per owner and block.
    pub async fn allocate_network(
        &self,
        caller: &Caller,
        block: &NetworkId,
        prefix_len: u8,
        owner: &Owner,
        name: Option<String>,
        subnet: Option<ipnet::IpNet>,
    ) -> IpamResult<Network> {
        self.check_route(caller, block, "block")?;
        let backend = self.backend(&caller.backend)?;
        let block_local = block.backend_id();
        let _guard = self.locks.lock(LockKey::Block(block.clone())).await;
        let current = timed(&caller.backend, "networks", backend.networks(&caller.cx)).await?;
        if let Some(existing) = current.into_iter().find(|n| {
            n.block.as_deref() == Some(block_local.as_str()) && n.owner.as_ref() == Some(owner)
        }) {
            // The retry of the same request gets the same network; a different request from the
            // same owner is a conflict, not silently the old network.
            let wanted = match subnet {
                Some(net) => net.trunc() == existing.cidr,
                None => existing.cidr.prefix_len() == prefix_len,
            };
            if !wanted {
                let asked = subnet.map_or_else(|| format!("a /{prefix_len}"), |n| n.to_string());
                return Err(IpamError::Conflict(format!(
                    "owner {owner} already holds network {} ({}) in block {block}, not {asked}",
                    existing.name, existing.cidr
                )));
            }
            return Ok(Network {
                id: NetworkId::new(&caller.backend, &existing.backend_id),
                info: existing,
            });
        }
        let req = CarveRequest {
            block: block_local,
            prefix_len,
            owner: owner.clone(),
            name,
            subnet,
        };
        let info = timed(
            &caller.backend,
            "allocate_network",
            backend.allocate_network(&caller.cx, &req),
        )
        .await?;
        self.invalidate(&caller.backend);
        Ok(Network {
            id: NetworkId::new(&caller.backend, &info.backend_id),
            info,
        })
    }

    pub async fn release_network(&self, caller: &Caller, network: &NetworkId) -> IpamResult<()> {
        self.check_route(caller, network, "network")?;
        let backend = self.backend(&caller.backend)?;
        let _guard = self.locks.lock(LockKey::Records(network.clone())).await;
        timed(
            &caller.backend,
            "release_network",
            backend.release_network(&caller.cx, &network.backend_id()),
        )
        .await?;
        self.invalidate(&caller.backend);
        Ok(())
    }
}
