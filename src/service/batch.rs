//! All or nothing: [`Batch`], the one rule every contract's multi-address call runs
//! ([`Ipam::run_batch`]), what it took ([`Taken`]) and how giving it back went ([`Rollback`]).

use super::{AllocationRequest, Caller, Ipam};
use crate::domain::{Allocation, IpamError, NetworkId};

impl Ipam {
    /// Takes every item of `batch` or none: items in order, each group pinned to the network its
    /// first item was taken in; on the first failure, what was taken is given back last first
    /// and the failure names the item, its error (the original one) and how the rollback went.
    /// See [`Batch`].
    pub async fn run_batch(&self, caller: &Caller, batch: &Batch) -> Result<Taken, BatchFailure> {
        let mut taken = Taken::default();
        for (index, item) in batch.items.iter().enumerate() {
            let pinned = item.group.and_then(|g| taken.network_of(g)).cloned();
            let tried = match pinned {
                Some(n) => vec![n],
                None => item.request.networks.clone(),
            };
            let req = AllocationRequest {
                networks: tried.clone(),
                ..item.request.clone()
            };
            let outcome = match batch.mode {
                BatchMode::InOrder => self.allocate(caller, &req).await,
                BatchMode::HeldFirst { register_dns: true } => {
                    self.allocate_held_first(caller, &req).await
                }
                BatchMode::HeldFirst {
                    register_dns: false,
                } => self.allocate_held_first_unregistered(caller, &req).await,
                BatchMode::Another => self.allocate_another(caller, &req).await,
            };
            match outcome {
                Ok(a) => {
                    taken.allocations.push(a);
                    taken.groups.push(item.group);
                    taken.aliases.push(item.request.aliases.clone());
                }
                Err(error) => {
                    let rollback = self.roll_back(caller, taken).await;
                    return Err(BatchFailure {
                        index,
                        error,
                        tried,
                        rollback,
                    });
                }
            }
        }
        Ok(taken)
    }

    /// Gives back what a batch took, last first: for a step after the batch that fails, so the
    /// call as a whole still takes nothing. Logs and reports what could not be released.
    pub async fn roll_back(&self, caller: &Caller, taken: Taken) -> Rollback {
        let mut failures = Vec::new();
        for (i, a) in taken.allocations.iter().enumerate().rev() {
            let aliases = taken.aliases.get(i).map_or(&[][..], Vec::as_slice);
            if let Err(e) = self
                .release_with_aliases(caller, &a.network_id, a.address, aliases)
                .await
            {
                tracing::error!(address = %a.address, network = %a.network_id, error = %e,
                    "rollback could not release an address");
                failures.push(format!("{} in {}: {e}", a.address, a.network_id));
            }
        }
        Rollback {
            taken: taken.allocations,
            failures,
        }
    }
}

/// How each item of a [`Batch`] is allocated: which [`Ipam`] allocation it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchMode {
    /// [`Ipam::allocate`]: candidates in order; an owner holding an address in one gets it back.
    InOrder,
    /// [`Ipam::allocate_held_first`] (the host name registered in DNS), or with
    /// `register_dns: false` [`Ipam::allocate_held_first_unregistered`].
    HeldFirst { register_dns: bool },
    /// [`Ipam::allocate_another`]: a new address even where the owner holds one (moving an
    /// address in place: take the new one first).
    Another,
}

/// Addresses taken all or nothing, the one rule behind the native API's
/// `POST /api/v1/allocations/batch`, vRA's Allocate IP (every address of every NIC) and Avi's
/// Create/Update IPAM record (one address per family), run by [`Ipam::run_batch`]:
///
/// - items are allocated in order, each with the [`BatchMode`] of the batch;
/// - items of one group take their addresses from one network: the first of them to be
///   allocated tries the group's candidates, the later ones only the network it was taken in
///   (vRA: every address of one `IpAllocation` comes from one range, contract p.14);
/// - on the first item that fails, everything taken so far is released last first and the
///   answer is a [`BatchFailure`]: which item, the original error, the networks that item
///   tried, and the [`Rollback`] (what was taken, what could not be given back);
/// - a step the caller runs after a successful batch (reading the networks' settings, changing
///   a kept record) that fails gives the [`Taken`] back with [`Ipam::roll_back`].
///
/// Contracts only build the items from their wire shapes and turn a [`BatchFailure`] into their
/// error envelope.
#[derive(Debug, Clone)]
pub struct Batch {
    mode: BatchMode,
    items: Vec<BatchItem>,
}

#[derive(Debug, Clone)]
struct BatchItem {
    request: AllocationRequest,
    group: Option<usize>,
}

impl Batch {
    pub fn new(mode: BatchMode) -> Self {
        Batch {
            mode,
            items: Vec::new(),
        }
    }

    /// Adds an item of its own (its candidates are tried whatever the other items took).
    /// Returns its index, the one a [`BatchFailure`] names.
    pub fn push(&mut self, request: AllocationRequest) -> usize {
        self.items.push(BatchItem {
            request,
            group: None,
        });
        self.items.len() - 1
    }

    /// Adds an item to `group`: it takes its address in the network where the group's first
    /// allocated item took one (its own candidates are used only when it is that first item).
    /// Returns its index.
    pub fn push_grouped(&mut self, group: usize, request: AllocationRequest) -> usize {
        self.items.push(BatchItem {
            request,
            group: Some(group),
        });
        self.items.len() - 1
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// What a [`Batch`] took, in the order of its items. Dropping it keeps the addresses; a later
/// failure of the same call gives them back with [`Ipam::roll_back`].
#[derive(Debug, Default)]
#[must_use = "the addresses stay taken; give them back with Ipam::roll_back if the call fails"]
pub struct Taken {
    allocations: Vec<Allocation>,
    groups: Vec<Option<usize>>,
    /// Each item's [`AllocationRequest::aliases`]: a rollback deletes their records too.
    aliases: Vec<Vec<String>>,
}

impl Taken {
    /// One per item, in item order.
    pub fn allocations(&self) -> &[Allocation] {
        &self.allocations
    }

    /// The network a group's addresses were taken in.
    pub fn network_of(&self, group: usize) -> Option<&NetworkId> {
        self.in_group(group).next().map(|a| &a.network_id)
    }

    /// A group's allocations, in item order.
    pub fn in_group(&self, group: usize) -> impl Iterator<Item = &Allocation> {
        self.allocations
            .iter()
            .zip(&self.groups)
            .filter(move |(_, g)| **g == Some(group))
            .map(|(a, _)| a)
    }
}

/// How giving a batch's addresses back went.
#[derive(Debug, Clone, Default)]
pub struct Rollback {
    /// What had been taken, in the order it was taken (released last first).
    pub taken: Vec<Allocation>,
    /// What could not be released, `<address> in <network id>: <error>` (each also logged):
    /// those addresses stay held by their owners.
    pub failures: Vec<String>,
}

/// The failure of a [`Batch`]: which item, why, and what the rollback did.
#[derive(Debug, Clone)]
pub struct BatchFailure {
    /// The failed item's index (what [`Batch::push`] returned).
    pub index: usize,
    /// The item's own error, unchanged.
    pub error: IpamError,
    /// The networks the item was tried in: its candidates, or its group's network.
    pub tried: Vec<NetworkId>,
    pub rollback: Rollback,
}

#[cfg(test)]
mod batch_tests {
    use std::collections::BTreeMap;
    use std::net::IpAddr;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::backends::{Backend, CallContext};
    use crate::domain::{
        AllocateIn, AllocationInfo, BackendStatus, IpamResult, Lookup, Owner, RecordDetails,
    };

    /// A store of pools: backend-local network → the addresses it hands out, lowest free first,
    /// as every backend's next-free allocation does (phpIPAM `first_free`, Infoblox
    /// `next_available_ip`, the embedded store's scan). A full pool answers `Exhausted`, as
    /// `Backend::allocate` documents. `fail_allocation` makes the Nth allocation (0-based) fail
    /// and `fail_release` the release of one address, as an unreachable backend fails
    /// (`Unavailable`, the error of a refused connection in `backends::http`). `released` records
    /// the order of releases.
    #[derive(Debug, Default)]
    struct Pools {
        free: Mutex<BTreeMap<String, Vec<IpAddr>>>,
        held: Mutex<Vec<AllocationInfo>>,
        allocations: std::sync::atomic::AtomicUsize,
        fail_allocation: Option<usize>,
        fail_release: Option<IpAddr>,
        released: Mutex<Vec<IpAddr>>,
    }

    fn down() -> IpamError {
        IpamError::Unavailable {
            backend: "b".into(),
            detail: "connection refused".into(),
        }
    }

    impl Pools {
        fn with(pools: &[(&str, &[&str])]) -> Pools {
            let free = pools
                .iter()
                .map(|(n, addrs)| {
                    let addrs = addrs.iter().map(|a| a.parse().expect("ip")).collect();
                    ((*n).to_owned(), addrs)
                })
                .collect();
            Pools {
                free: Mutex::new(free),
                ..Pools::default()
            }
        }

        fn held(&self) -> Vec<IpAddr> {
            self.held
                .lock()
                .expect("held")
                .iter()
                .map(|a| a.address)
                .collect()
        }
    }

    #[async_trait::async_trait]
    impl Backend for Pools {
        fn name(&self) -> &str {
            "b"
        }
        fn kind(&self) -> &'static str {
            "pools"
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
            let n = self
                .allocations
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if self.fail_allocation == Some(n) {
                return Err(down());
            }
            let mut free = self.free.lock().expect("free");
            let pool = free
                .get_mut(&req.network)
                .ok_or_else(|| IpamError::NotFound(format!("network {}", req.network)))?;
            if pool.is_empty() {
                return Err(IpamError::Exhausted(format!("{} is full", req.network)));
            }
            let address = pool.remove(0);
            let a = AllocationInfo {
                network: req.network.clone(),
                address,
                owner: Some(req.owner.clone()),
                details: req.details.clone(),
                reference: None,
            };
            self.held.lock().expect("held").push(a.clone());
            Ok(a)
        }
        async fn find(
            &self,
            _cx: &CallContext,
            lookup: &Lookup,
        ) -> IpamResult<Vec<AllocationInfo>> {
            let held = self.held.lock().expect("held");
            Ok(held
                .iter()
                .filter(|a| match lookup {
                    Lookup::Owner(o) => a.owner.as_ref() == Some(o),
                    Lookup::Address { address, .. } => a.address == *address,
                })
                .cloned()
                .collect())
        }
        async fn release(
            &self,
            _cx: &CallContext,
            network: &str,
            address: IpAddr,
        ) -> IpamResult<()> {
            if self.fail_release == Some(address) {
                return Err(down());
            }
            self.released.lock().expect("released").push(address);
            let mut held = self.held.lock().expect("held");
            if let Some(i) = held.iter().position(|a| a.address == address) {
                held.remove(i);
                let mut free = self.free.lock().expect("free");
                if let Some(pool) = free.get_mut(network) {
                    pool.push(address);
                    pool.sort();
                }
            }
            Ok(())
        }
    }

    fn ipam_over(b: &Arc<Pools>) -> Ipam {
        let backend: Arc<dyn Backend> = b.clone();
        Ipam::new(vec![backend], Duration::from_secs(60))
    }

    fn caller() -> Caller {
        Caller {
            name: "test".into(),
            backend: "b".into(),
            cx: CallContext::default(),
        }
    }

    fn net(local: &str) -> NetworkId {
        NetworkId::new("b", local)
    }

    fn request(owner: &str, networks: &[&str]) -> AllocationRequest {
        AllocationRequest {
            owner: Owner::parse(owner).expect("owner"),
            networks: networks.iter().map(|n| net(n)).collect(),
            address: None,
            details: RecordDetails::default(),
            aliases: Vec::new(),
        }
    }

    fn ips(texts: &[&str]) -> Vec<IpAddr> {
        texts.iter().map(|t| t.parse().expect("ip")).collect()
    }

    #[tokio::test]
    async fn a_batch_that_fails_on_its_third_item_gives_back_the_first_two_last_first() {
        let b = Arc::new(Pools {
            fail_allocation: Some(2),
            ..Pools::with(&[("a", &["10.0.0.1", "10.0.0.2", "10.0.0.3"])])
        });
        let ipam = ipam_over(&b);
        let mut batch = Batch::new(BatchMode::InOrder);
        for owner in ["o1", "o2", "o3"] {
            batch.push(request(owner, &["a"]));
        }
        let f = ipam
            .run_batch(&caller(), &batch)
            .await
            .expect_err("the third fails");
        assert_eq!(f.index, 2);
        assert!(
            matches!(f.error, IpamError::Unavailable { .. }),
            "{}",
            f.error
        );
        assert_eq!(f.tried, vec![net("a")]);
        let taken: Vec<IpAddr> = f.rollback.taken.iter().map(|a| a.address).collect();
        assert_eq!(taken, ips(&["10.0.0.1", "10.0.0.2"]), "in the order taken");
        assert!(f.rollback.failures.is_empty(), "{:?}", f.rollback.failures);
        assert_eq!(
            *b.released.lock().expect("released"),
            ips(&["10.0.0.2", "10.0.0.1"]),
            "released last first"
        );
        assert!(b.held().is_empty(), "nothing is left taken: {:?}", b.held());
    }

    #[tokio::test]
    async fn a_rollback_that_cannot_release_an_address_reports_it_and_releases_the_rest() {
        let b = Arc::new(Pools {
            fail_allocation: Some(2),
            fail_release: Some(ips(&["10.0.0.1"])[0]),
            ..Pools::with(&[("a", &["10.0.0.1", "10.0.0.2", "10.0.0.3"])])
        });
        let ipam = ipam_over(&b);
        let mut batch = Batch::new(BatchMode::InOrder);
        for owner in ["o1", "o2", "o3"] {
            batch.push(request(owner, &["a"]));
        }
        let f = ipam
            .run_batch(&caller(), &batch)
            .await
            .expect_err("the third fails");
        assert!(
            matches!(f.error, IpamError::Unavailable { .. }),
            "the item's own error, not the rollback's: {}",
            f.error
        );
        assert_eq!(f.rollback.taken.len(), 2);
        assert_eq!(f.rollback.failures.len(), 1, "{:?}", f.rollback.failures);
        let failure = &f.rollback.failures[0];
        assert!(
            failure.starts_with(&format!("10.0.0.1 in {}: ", net("a"))),
            "names the address and its network: {failure}"
        );
        assert!(failure.contains("connection refused"), "and why: {failure}");
        assert_eq!(
            b.held(),
            ips(&["10.0.0.1"]),
            "only the failed release stays"
        );
    }

    #[tokio::test]
    async fn items_of_one_group_take_from_the_network_its_first_item_was_taken_in() {
        // `a` has one address left, `b` plenty: alone, the second item would spill into `b`.
        let b = Arc::new(Pools::with(&[
            ("a", &["10.0.0.1"]),
            ("b", &["10.0.1.1", "10.0.1.2"]),
        ]));
        let ipam = ipam_over(&b);
        let mut batch = Batch::new(BatchMode::InOrder);
        batch.push_grouped(7, request("o1", &["a", "b"]));
        batch.push_grouped(7, request("o2", &["a", "b"]));
        let f = ipam
            .run_batch(&caller(), &batch)
            .await
            .expect_err("the group's network is full");
        assert_eq!(f.index, 1);
        assert!(matches!(f.error, IpamError::Exhausted(_)), "{}", f.error);
        assert_eq!(f.tried, vec![net("a")], "only the pinned network was tried");
        assert_eq!(f.rollback.taken.len(), 1);
        assert!(b.held().is_empty(), "{:?}", b.held());

        // The same two items on their own: each tries every candidate.
        let mut batch = Batch::new(BatchMode::InOrder);
        batch.push(request("o1", &["a", "b"]));
        batch.push(request("o2", &["a", "b"]));
        let taken = ipam.run_batch(&caller(), &batch).await.expect("taken");
        let nets: Vec<&NetworkId> = taken.allocations().iter().map(|a| &a.network_id).collect();
        assert_eq!(nets, vec![&net("a"), &net("b")]);
    }

    #[tokio::test]
    async fn a_group_whose_first_candidate_is_full_is_pinned_where_its_first_item_went() {
        let b = Arc::new(Pools::with(&[
            ("a", &[]),
            ("b", &["10.0.1.1", "10.0.1.2", "10.0.1.3"]),
            ("c", &["10.0.2.1"]),
        ]));
        let ipam = ipam_over(&b);
        let mut batch = Batch::new(BatchMode::InOrder);
        for owner in ["g0-1", "g0-2", "g0-3"] {
            batch.push_grouped(0, request(owner, &["a", "b"]));
        }
        batch.push_grouped(1, request("g1-1", &["c"]));
        let taken = ipam.run_batch(&caller(), &batch).await.expect("taken");
        assert_eq!(taken.network_of(0), Some(&net("b")));
        assert_eq!(taken.network_of(1), Some(&net("c")));
        assert_eq!(taken.network_of(2), None);
        let group0: Vec<IpAddr> = taken.in_group(0).map(|a| a.address).collect();
        assert_eq!(group0, ips(&["10.0.1.1", "10.0.1.2", "10.0.1.3"]));
    }

    #[tokio::test]
    async fn what_a_batch_took_is_given_back_when_a_later_step_fails() {
        let b = Arc::new(Pools::with(&[("a", &["10.0.0.1", "10.0.0.2"])]));
        let ipam = ipam_over(&b);
        let mut batch = Batch::new(BatchMode::InOrder);
        batch.push(request("o1", &["a"]));
        batch.push(request("o2", &["a"]));
        let taken = ipam.run_batch(&caller(), &batch).await.expect("taken");
        assert_eq!(b.held().len(), 2);
        let rollback = ipam.roll_back(&caller(), taken).await;
        assert_eq!(rollback.taken.len(), 2);
        assert!(rollback.failures.is_empty());
        assert!(b.held().is_empty(), "{:?}", b.held());
        assert_eq!(
            *b.released.lock().expect("released"),
            ips(&["10.0.0.2", "10.0.0.1"])
        );
    }

    #[tokio::test]
    async fn a_retried_batch_gets_the_addresses_its_owners_already_hold() {
        let b = Arc::new(Pools::with(&[("a", &["10.0.0.1", "10.0.0.2", "10.0.0.3"])]));
        let ipam = ipam_over(&b);
        for mode in [
            BatchMode::InOrder,
            BatchMode::HeldFirst { register_dns: true },
        ] {
            let mut batch = Batch::new(mode);
            batch.push(request("o1", &["a"]));
            batch.push(request("o2", &["a"]));
            let taken = ipam.run_batch(&caller(), &batch).await.expect("taken");
            let got: Vec<IpAddr> = taken.allocations().iter().map(|a| a.address).collect();
            assert_eq!(got, ips(&["10.0.0.1", "10.0.0.2"]), "{mode:?}");
        }
        // `Another` takes new ones even so (moving an address in place).
        let mut batch = Batch::new(BatchMode::Another);
        batch.push(request("o1", &["a"]));
        let taken = ipam.run_batch(&caller(), &batch).await.expect("taken");
        assert_eq!(taken.allocations()[0].address, ips(&["10.0.0.3"])[0]);
    }
}
