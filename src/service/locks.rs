//! What this process serialises: [`LockKey`] (the decision of which operations exclude which,
//! and why a release does not wait for an allocation) and [`KeyedLocks`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::domain::{NetworkId, Owner};

/// What this process serialises, and against what. Locks are per process: other replicas are
/// never excluded, and each backend's own primitive decides between them.
///
/// Which operations exclude which is the decision this type records:
///
/// - An allocation holds [`LockKey::Owner`] for the whole request and, on a backend whose
///   allocation is not atomic ([`Backend::atomic_allocation`]), [`LockKey::NextFree`] of the
///   network around the backend call that takes the address.
/// - Release, update and deleting a network hold [`LockKey::Records`] of the network; carving
///   holds [`LockKey::Block`] of the block.
///
/// **A release (or update) does not wait for an allocation in the same network, and that is
/// right.** `NextFree` exists because phpIPAM's `first_free` is a lookup then an insert: two
/// allocations of this process in one network would read the same lowest free address and
/// one of them would lose the insert (409 / duplicate) and retry, so they take turns. What an
/// allocation relies on between that lookup and that insert is that nobody *takes* the address
/// it read. A release only frees: an address freed inside the window is either seen free and
/// taken (it is free) or not seen and a higher one taken; an update changes a record's text,
/// not which addresses are held. Neither can make the allocation take a held address or lose
/// one, so excluding them would only make a release wait behind a slow allocation. (A release
/// of the very address just handed out is an ordering between two requests, the same as the
/// release arriving just after; no lock can tell them apart.) Proved by
/// `a_release_does_not_wait_for_an_allocation_in_the_same_network_and_cannot_spoil_it` and
/// `allocations_in_one_network_take_turns_for_the_next_free_address`.
///
/// `Records` serialises a release, an update and a network deletion of one network with each
/// other: on phpIPAM and Infoblox each is a lookup followed by a write by id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LockKey {
    /// One allocation request per owner of a backend at a time: the owner lookup and the
    /// allocation after it cannot race with a retry of the same request.
    Owner { backend: String, owner: Owner },
    /// Taking the next free address of a network, on a backend whose allocation is not atomic.
    NextFree(NetworkId),
    /// Changing or removing what a network holds: release, update, network deletion.
    Records(NetworkId),
    /// Carving networks out of a block: the lookup of the owner's network and the carve.
    Block(NetworkId),
}

/// Async mutexes by key, created on demand and dropped when nobody holds or waits for them.
#[derive(Default)]
pub struct KeyedLocks {
    map: Mutex<HashMap<LockKey, Arc<tokio::sync::Mutex<()>>>>,
}

pub struct KeyedGuard<'a> {
    locks: &'a KeyedLocks,
    key: LockKey,
    mutex: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl KeyedLocks {
    pub async fn lock(&self, key: LockKey) -> KeyedGuard<'_> {
        let mutex = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.clone()).or_default().clone()
        };
        let guard = mutex.clone().lock_owned().await;
        KeyedGuard {
            locks: self,
            key,
            mutex,
            guard: Some(guard),
        }
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for KeyedGuard<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut map = self.locks.map.lock().unwrap_or_else(|p| p.into_inner());
        // The map's Arc and ours: nobody else holds or waits for this lock.
        if Arc::strong_count(&self.mutex) == 2 {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::sync::atomic::Ordering::SeqCst;
    use std::time::Duration;

    use super::*;
    use crate::backends::{Backend, CallContext};
    use crate::domain::{AllocateIn, AllocationInfo, BackendStatus, IpamError, IpamResult, Lookup};
    use crate::service::Ipam;
    use crate::service::test_support::{caller, ip, wanted};

    #[tokio::test]
    async fn keyed_locks_serialise_one_key_and_clean_up() {
        let locks = Arc::new(KeyedLocks::default());
        let counter = Arc::new(Mutex::new((0u32, 0u32))); // (inside now, max inside)
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (locks, counter) = (locks.clone(), counter.clone());
            tasks.push(tokio::spawn(async move {
                let _g = locks.lock(net_key("net-a")).await;
                {
                    let mut c = counter.lock().expect("counter");
                    c.0 += 1;
                    c.1 = c.1.max(c.0);
                }
                tokio::task::yield_now().await;
                counter.lock().expect("counter").0 -= 1;
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(
            counter.lock().expect("counter").1,
            1,
            "never two holders at once"
        );
        assert!(locks.is_empty(), "entries are dropped when unused");
    }

    #[tokio::test]
    async fn different_keys_do_not_block_each_other() {
        let locks = KeyedLocks::default();
        let _a = locks.lock(net_key("a")).await;
        let b = tokio::time::timeout(Duration::from_secs(1), locks.lock(net_key("b"))).await;
        assert!(b.is_ok());
        // The same id under another kind of key is another lock.
        let c = tokio::time::timeout(
            Duration::from_secs(1),
            locks.lock(LockKey::NextFree(NetworkId::new("b", "a"))),
        )
        .await;
        assert!(c.is_ok());
    }

    fn net_key(local: &str) -> LockKey {
        LockKey::Records(NetworkId::new("b", local))
    }

    /// phpIPAM's `POST addresses/first_free/{subnet}/` as the two steps it is inside phpIPAM:
    /// read the lowest free address, then insert it; the insert of an address taken in between
    /// fails as phpIPAM's unique key (ip, subnet) makes it fail (a 409 or a "Duplicate entry"
    /// 500, see `PhpipamBackend::allocate_next` and the module doc of `backends::phpipam`).
    /// Every allocation waits between the two steps until the test adds a permit to `gate`;
    /// `inside` / `max_inside` count allocations in that window. Addresses are 10.0.0.x, the
    /// network hands out .2 upwards.
    #[derive(Debug)]
    struct FirstFree {
        taken: Mutex<std::collections::BTreeSet<u8>>,
        gate: tokio::sync::Semaphore,
        in_window: tokio::sync::Notify,
        inside: std::sync::atomic::AtomicUsize,
        max_inside: std::sync::atomic::AtomicUsize,
    }

    impl FirstFree {
        fn holding(taken: &[u8]) -> Arc<Self> {
            Arc::new(FirstFree {
                taken: Mutex::new(taken.iter().copied().collect()),
                gate: tokio::sync::Semaphore::new(0),
                in_window: tokio::sync::Notify::new(),
                inside: std::sync::atomic::AtomicUsize::new(0),
                max_inside: std::sync::atomic::AtomicUsize::new(0),
            })
        }

        fn taken(&self) -> Vec<u8> {
            self.taken.lock().expect("taken").iter().copied().collect()
        }
    }

    fn last_octet(a: IpAddr) -> Option<u8> {
        match a {
            IpAddr::V4(v4) => Some(v4.octets()[3]),
            IpAddr::V6(_) => None,
        }
    }

    #[async_trait::async_trait]
    impl Backend for FirstFree {
        fn name(&self) -> &str {
            "b"
        }
        fn kind(&self) -> &'static str {
            "first-free"
        }
        async fn check(&self, _cx: &CallContext) -> IpamResult<BackendStatus> {
            Err(IpamError::Unsupported("check".into()))
        }
        async fn networks(&self, _cx: &CallContext) -> IpamResult<Vec<crate::domain::NetworkInfo>> {
            Ok(Vec::new())
        }
        async fn blocks(&self, _cx: &CallContext) -> IpamResult<Vec<crate::domain::BlockInfo>> {
            Ok(Vec::new())
        }
        async fn allocate(
            &self,
            _cx: &CallContext,
            req: &AllocateIn,
        ) -> IpamResult<AllocationInfo> {
            let read = {
                let taken = self.taken.lock().expect("taken");
                (2..=254u8)
                    .find(|x| !taken.contains(x))
                    .ok_or_else(|| IpamError::Exhausted("10.0.0.0/24 is full".into()))?
            };
            let now = self.inside.fetch_add(1, SeqCst) + 1;
            self.max_inside.fetch_max(now, SeqCst);
            self.in_window.notify_one();
            self.gate
                .acquire()
                .await
                .map_err(|_| IpamError::Internal("gate closed".into()))?
                .forget();
            self.inside.fetch_sub(1, SeqCst);
            if !self.taken.lock().expect("taken").insert(read) {
                return Err(IpamError::Conflict(format!(
                    "Duplicate entry '10.0.0.{read}' for key 'ip_subnet'"
                )));
            }
            Ok(AllocationInfo {
                network: req.network.clone(),
                address: IpAddr::from([10, 0, 0, read]),
                owner: Some(req.owner.clone()),
                details: req.details.clone(),
                reference: None,
            })
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
            address: IpAddr,
        ) -> IpamResult<()> {
            if let Some(x) = last_octet(address) {
                self.taken.lock().expect("taken").remove(&x);
            }
            Ok(())
        }
    }

    fn first_free_ipam(b: &Arc<FirstFree>) -> Arc<Ipam> {
        let backend: Arc<dyn Backend> = b.clone();
        Arc::new(Ipam::new(vec![backend], Duration::from_secs(60)))
    }

    /// The decision in [`LockKey`]'s doc: a release in a network goes ahead while an allocation
    /// there is between reading the next free address and inserting it, and the allocation
    /// still takes a free address, holding nothing twice and losing nothing.
    #[tokio::test]
    async fn a_release_does_not_wait_for_an_allocation_in_the_same_network_and_cannot_spoil_it() {
        let b = FirstFree::holding(&[2, 3, 5]);
        let ipam = first_free_ipam(&b);
        let allocation = tokio::spawn({
            let ipam = ipam.clone();
            async move {
                ipam.allocate_another(&caller(), &wanted("vm-a", None))
                    .await
            }
        });
        tokio::time::timeout(Duration::from_secs(5), b.in_window.notified())
            .await
            .expect("the allocation read the next free address (.4)");
        let net = NetworkId::new("b", "net");
        // Frees an address below the one the allocation read, and the one it read (already
        // free: releasing it is a no-op), while the allocation holds the network's NextFree.
        for freed in ["10.0.0.3", "10.0.0.4"] {
            tokio::time::timeout(
                Duration::from_secs(1),
                ipam.release(&caller(), &net, ip(freed)),
            )
            .await
            .unwrap_or_else(|_| panic!("releasing {freed} waited for the allocation"))
            .expect("released");
        }
        assert_eq!(b.taken(), vec![2, 5], "released while the allocation waits");
        b.gate.add_permits(1);
        let got = allocation
            .await
            .expect("task")
            .expect("the allocation is not spoiled by the release");
        assert_eq!(
            got.address,
            ip("10.0.0.4"),
            "the address it read, still free"
        );
        assert_eq!(b.taken(), vec![2, 4, 5], "nothing held twice, nothing lost");
    }

    /// The other half: allocations of this process in one network take turns around the
    /// backend's non-atomic next-free step, so they never read the same address and never lose
    /// the insert to each other.
    #[tokio::test]
    async fn allocations_in_one_network_take_turns_for_the_next_free_address() {
        let b = FirstFree::holding(&[2]);
        let ipam = first_free_ipam(&b);
        let tasks: Vec<_> = ["vm-a", "vm-b", "vm-c"]
            .into_iter()
            .map(|owner| {
                let ipam = ipam.clone();
                tokio::spawn(
                    async move { ipam.allocate_another(&caller(), &wanted(owner, None)).await },
                )
            })
            .collect();
        tokio::time::timeout(Duration::from_secs(5), b.in_window.notified())
            .await
            .expect("one allocation is in the window");
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert_eq!(b.inside.load(SeqCst), 1, "the others wait for NextFree");
        b.gate.add_permits(3);
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await.expect("task").expect("every allocation succeeds"));
        }
        let mut addresses: Vec<IpAddr> = got.iter().map(|a| a.address).collect();
        addresses.sort();
        assert_eq!(
            addresses,
            vec![ip("10.0.0.3"), ip("10.0.0.4"), ip("10.0.0.5")]
        );
        assert_eq!(b.max_inside.load(SeqCst), 1, "never two in the window");
        assert_eq!(b.taken(), vec![2, 3, 4, 5]);
    }
}
