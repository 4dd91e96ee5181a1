//! Network listings: the per-(backend, caller scope) snapshot cached in moka, the last listing
//! kept for answers that only describe a network, blocks, and dropping a backend's listings
//! after a change.

use std::sync::Arc;

use super::{Caller, Ipam, timed};
use crate::domain::{Block, IpamError, IpamResult, Network, NetworkFilter, NetworkId};

impl Ipam {
    /// The whole listing for a caller, from cache when warm.
    pub async fn network_snapshot(&self, caller: &Caller) -> IpamResult<Arc<Vec<Network>>> {
        let backend = self.backend(&caller.backend)?.clone();
        let key = (caller.backend.clone(), caller.scope());
        let mut missed = false;
        let result = self
            .listings
            .try_get_with(key.clone(), async {
                missed = true;
                let infos =
                    timed(&caller.backend, "networks", backend.networks(&caller.cx)).await?;
                let mut nets: Vec<Network> = infos
                    .into_iter()
                    .map(|info| Network {
                        id: NetworkId::new(&caller.backend, &info.backend_id),
                        info,
                    })
                    .collect();
                nets.sort_by(|a, b| a.id.cmp(&b.id));
                let nets = Arc::new(nets);
                self.last_listing.insert(key, nets.clone()).await;
                Ok::<_, IpamError>(nets)
            })
            .await;
        metrics::counter!("ipamgw_cache_requests_total",
            "cache" => "networks",
            "result" => if missed { "miss" } else { "hit" })
        .increment(1);
        result.map_err(|e: Arc<IpamError>| (*e).clone())
    }

    pub async fn networks(
        &self,
        caller: &Caller,
        filter: &NetworkFilter,
    ) -> IpamResult<Vec<Network>> {
        let all = self.network_snapshot(caller).await?;
        Ok(all
            .iter()
            .filter(|n| filter.matches(&n.info))
            .cloned()
            .collect())
    }

    /// One network by id, reloading the listing once if the cached one does not have it.
    pub async fn network(&self, caller: &Caller, id: &NetworkId) -> IpamResult<Network> {
        self.check_route(caller, id, "network")?;
        if let Some(n) = self
            .network_snapshot(caller)
            .await?
            .iter()
            .find(|n| &n.id == id)
        {
            return Ok(n.clone());
        }
        self.invalidate(&caller.backend);
        self.network_snapshot(caller)
            .await?
            .iter()
            .find(|n| &n.id == id)
            .cloned()
            .ok_or_else(|| IpamError::NotFound(format!("network {id}")))
    }

    /// One network as described by the last listing loaded within the listing TTL, even when a
    /// change (an allocation) has dropped the cached listing since; otherwise as
    /// [`Ipam::network`]. For answers that describe a network's settings (CIDR, gateway, DNS),
    /// which changes to addresses do not touch: its `free` count may be behind.
    pub async fn network_settings(&self, caller: &Caller, id: &NetworkId) -> IpamResult<Network> {
        self.check_route(caller, id, "network")?;
        let key = (caller.backend.clone(), caller.scope());
        let last = self.last_listing.get(&key).await;
        if let Some(n) = last
            .as_ref()
            .and_then(|nets| nets.iter().find(|n| &n.id == id))
        {
            return Ok(n.clone());
        }
        self.network(caller, id).await
    }

    pub async fn blocks(&self, caller: &Caller) -> IpamResult<Vec<Block>> {
        let backend = self.backend(&caller.backend)?;
        let infos = timed(&caller.backend, "blocks", backend.blocks(&caller.cx)).await?;
        Ok(infos
            .into_iter()
            .map(|info| Block {
                id: NetworkId::new(&caller.backend, &info.backend_id),
                info,
            })
            .collect())
    }

    pub(super) fn invalidate(&self, backend: &str) {
        let backend = backend.to_owned();
        // Only fails when invalidation closures are not enabled, and they are (see `new`).
        let _ = self
            .listings
            .invalidate_entries_if(move |k, _| k.0 == backend);
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::sync::atomic::Ordering::SeqCst;
    use std::time::Duration;

    use super::*;
    use crate::backends::{Backend, CallContext};
    use crate::domain::{AllocateIn, AllocationInfo, BackendStatus, Lookup};
    use crate::service::LISTING_CAPACITY;
    use crate::service::test_support::{caller, ip};

    /// A backend with one network that counts how often its listing is read.
    #[derive(Debug, Default)]
    struct Listed {
        listings: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Backend for Listed {
        fn name(&self) -> &str {
            "b"
        }
        fn kind(&self) -> &'static str {
            "listed"
        }
        async fn check(&self, _cx: &CallContext) -> IpamResult<BackendStatus> {
            Err(IpamError::Unsupported("check".into()))
        }
        async fn networks(&self, _cx: &CallContext) -> IpamResult<Vec<crate::domain::NetworkInfo>> {
            self.listings.fetch_add(1, SeqCst);
            let cidr: ipnet::IpNet = "10.0.0.0/24".parse().expect("cidr");
            Ok(vec![crate::domain::NetworkInfo::bare(
                "net",
                "servers",
                cidr,
                (ip("10.0.0.1"), ip("10.0.0.254")),
            )])
        }
        async fn blocks(&self, _cx: &CallContext) -> IpamResult<Vec<crate::domain::BlockInfo>> {
            Ok(Vec::new())
        }
        async fn allocate(
            &self,
            _cx: &CallContext,
            _req: &AllocateIn,
        ) -> IpamResult<AllocationInfo> {
            Err(IpamError::Unsupported("allocate".into()))
        }
        async fn find(
            &self,
            _cx: &CallContext,
            _lookup: &Lookup,
        ) -> IpamResult<Vec<AllocationInfo>> {
            Ok(Vec::new())
        }
        async fn release(
            &self,
            _cx: &CallContext,
            _network: &str,
            _address: IpAddr,
        ) -> IpamResult<()> {
            Ok(())
        }
    }

    fn listed_ipam(b: &Arc<Listed>, ttl: Duration, capacity: u64) -> Ipam {
        let backend: Arc<dyn Backend> = b.clone();
        Ipam::with_listing_capacity(vec![backend], ttl, capacity)
    }

    fn passthrough(user: &str) -> Caller {
        Caller {
            name: user.into(),
            backend: "b".into(),
            cx: CallContext {
                credentials: Some(crate::backends::Credentials {
                    username: user.into(),
                    password: secrecy::SecretString::from("pw"),
                }),
            },
        }
    }

    /// What the last listing is for: a vRA allocation answer describes the network it took an
    /// address in, after the allocation has dropped the cached listing, without a new listing.
    #[tokio::test]
    async fn network_settings_answer_from_the_last_listing_after_a_change_drops_the_cache() {
        let b = Arc::new(Listed::default());
        let ipam = listed_ipam(&b, Duration::from_secs(3600), LISTING_CAPACITY);
        let net = NetworkId::new("b", "net");
        ipam.network_snapshot(&caller()).await.expect("listing");
        ipam.invalidate("b"); // what an allocation does
        let n = ipam
            .network_settings(&caller(), &net)
            .await
            .expect("settings");
        assert_eq!(n.info.cidr.to_string(), "10.0.0.0/24");
        assert_eq!(b.listings.load(SeqCst), 1, "no second listing");
        // A fresh listing is what `network` reads after the change.
        ipam.network(&caller(), &net).await.expect("network");
        assert_eq!(b.listings.load(SeqCst), 2);
    }

    #[tokio::test]
    async fn the_last_listing_is_not_used_past_the_listing_ttl() {
        let b = Arc::new(Listed::default());
        let ipam = listed_ipam(&b, Duration::from_millis(50), LISTING_CAPACITY);
        ipam.network_snapshot(&caller()).await.expect("listing");
        tokio::time::sleep(Duration::from_millis(300)).await;
        ipam.network_settings(&caller(), &NetworkId::new("b", "net"))
            .await
            .expect("settings");
        assert_eq!(b.listings.load(SeqCst), 2, "expired: listed again");
    }

    /// The map this cache replaced kept one full listing per passthrough user for the life of
    /// the process.
    #[tokio::test]
    async fn the_last_listings_of_many_passthrough_users_stay_within_the_capacity() {
        let b = Arc::new(Listed::default());
        let ipam = listed_ipam(&b, Duration::from_secs(3600), 8);
        for i in 0..200 {
            ipam.network_snapshot(&passthrough(&format!("user-{i}")))
                .await
                .expect("listing");
        }
        assert_eq!(b.listings.load(SeqCst), 200, "one listing per user");
        ipam.last_listing.run_pending_tasks().await;
        ipam.listings.run_pending_tasks().await;
        assert!(
            ipam.last_listing.entry_count() <= 8,
            "{} last listings kept",
            ipam.last_listing.entry_count()
        );
        assert!(ipam.listings.entry_count() <= 8);
    }
}
