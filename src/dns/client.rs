//! The RFC 2136 client: A/AAAA and PTR updates signed with TSIG, through hickory-dns.
//!
//! What each operation sends (RFC 2136 §2.5; no hand-built wire format, hickory's messages):
//! - **add** `(name, addr)`: forward zone `add name A|AAAA addr` (§2.5.1: a duplicate RR is
//!   silently ignored, so a retry converges); reverse zone `add rev PTR name`.
//! - **replace** `(old, new, addr)`: `delete old A addr` + `add new A addr` in one message when
//!   both names are in the same zone (atomic), else one message per zone; reverse zone
//!   `delete rev PTR old` + `add rev PTR new`.
//! - **set_names** `(addr, old names, new names)`: the general form of add, replace and
//!   delete, for an address with several names (Avi's fqdns): one message per forward zone with
//!   every name of that zone (deletes of the names that leave, adds of the names that stay or
//!   come), and one to the reverse zone (the PTR names the first new name; PTRs to the other
//!   names go).
//! - **delete** `(name, addr)`: `delete name A addr` and `delete rev PTR name` — RR-specific
//!   deletes (§2.5.4, CLASS NONE): only the RR with exactly that name, type and data goes; the
//!   name's other addresses, and PTRs to other names, are never touched. An absent RR is
//!   "silently ignored" by the server: an already-deleted record is success, and retries
//!   converge. No prerequisite is added to deletes on purpose: a prerequisite such as "RR
//!   exists" (§2.4) would turn the retry of an applied delete into `NXRRSET`.
//!
//! The forward and the PTR updates go to the server in parallel (every message of an operation
//! is sent before any answer is awaited; tests/api/dns_avi.rs shows it with a server that
//! answers only once both are there). Each message is signed with the
//! configured TSIG key, and the answer's signature is verified. Servers are tried in order; the
//! configured timeout bounds the whole operation.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt as _;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::udp::UdpClientStream;
use hickory_net::xfer::DnsHandle as _;
use hickory_proto::op::{
    DnsRequest, DnsRequestOptions, DnsResponse, Message, OpCode, Query, ResponseCode,
};
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm as HickoryTsig, TsigError};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigner};
use ipnet::IpNet;

use super::DnsError;
use super::config::{DnsSettings, ServerAddr, TsigAlgorithm};
use super::names::{self, NameError};

/// TSIG fudge: the clock skew the server accepts (RFC 8945 §10 recommends 300 s).
const FUDGE_SECS: u16 = 300;

/// Registers and removes names for addresses, per one `[dns.<name>]` section.
#[derive(Debug, Clone)]
pub struct DnsUpdater {
    s: Arc<DnsSettings>,
}

/// What `check` found for one zone.
#[derive(Debug, Clone)]
pub struct ZoneCheck {
    pub zone: String,
    /// The SOA serial the server gave to a query signed with the key.
    pub serial: Result<u32, DnsError>,
    /// A no-op update (an RR-specific delete of a record that cannot exist) was accepted.
    pub update: Result<(), DnsError>,
}

impl ZoneCheck {
    pub fn updatable(&self) -> bool {
        self.serial.is_ok() && self.update.is_ok()
    }
}

/// What [`DnsUpdater::set_names`] does when some of its messages fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Undo the messages that were applied (best effort): all or nothing. RFC 2136 cannot tell
    /// an add that created a record from one that found it there (§2.5.1), so the undo deletes
    /// both: only for changes whose records are the caller's own (an address just taken, a
    /// rename of its record).
    Revert,
    /// Leave what was applied.
    Keep,
}

/// One update RR: added, or deleted (RR-specific).
enum Change {
    Add(Record),
    Delete(Record),
}

impl DnsUpdater {
    pub fn new(settings: DnsSettings) -> Self {
        DnsUpdater {
            s: Arc::new(settings),
        }
    }

    pub fn settings(&self) -> &DnsSettings {
        &self.s
    }

    /// The configured forward zone that holds `name` (longest suffix), or an error naming `field`.
    pub fn forward_zone(&self, field: &str, name: &str) -> Result<String, DnsError> {
        names::zone_for(name, &self.s.forward_zones)
            .map(str::to_owned)
            .ok_or_else(|| {
                DnsError::Name(NameError::new(
                    field,
                    format!(
                        "'{name}' is in none of the zones dns.{} may update ({})",
                        self.s.name,
                        self.s.forward_zones.join(", ")
                    ),
                ))
            })
    }

    /// The reverse zone for an address: from the configured list (longest suffix), or derived
    /// from `network` (IPv4 /8 /16 /24, IPv6 nibbles) when no list is configured.
    pub fn reverse_zone(&self, addr: IpAddr, network: Option<IpNet>) -> Result<String, DnsError> {
        let rev = names::reverse_name(addr);
        match &self.s.reverse_zones {
            Some(zones) => names::zone_for(&rev, zones)
                .map(str::to_owned)
                .ok_or_else(|| {
                    DnsError::Name(NameError::new(
                        "address",
                        format!(
                            "{addr} ({rev}) is in none of the reverse zones of dns.{} ({})",
                            self.s.name,
                            zones.join(", ")
                        ),
                    ))
                }),
            None => {
                let Some(net) = network else {
                    return Err(DnsError::Name(NameError::new(
                        "network",
                        format!(
                            "dns.{} derives reverse zones from the network, and none was given for {addr}",
                            self.s.name
                        ),
                    )));
                };
                if !net.contains(&addr) {
                    return Err(DnsError::Name(NameError::new(
                        "address",
                        format!("{addr} is not in the network {net}"),
                    )));
                }
                Ok(names::reverse_zone_of("network", net)?)
            }
        }
    }

    /// Adds `name A|AAAA addr` and (with `ptr = true`) `rev PTR name`.
    pub async fn add(
        &self,
        name: &str,
        addr: IpAddr,
        network: Option<IpNet>,
    ) -> Result<(), DnsError> {
        self.converge(addr, network, &[], &[("name", name)], OnFailure::Keep)
            .await
    }

    /// Moves `addr` from the name `old` to the name `new` (A/AAAA and PTR).
    pub async fn replace(
        &self,
        old: &str,
        new: &str,
        addr: IpAddr,
        network: Option<IpNet>,
    ) -> Result<(), DnsError> {
        self.converge(
            addr,
            network,
            &[("old_name", old)],
            &[("name", new)],
            OnFailure::Keep,
        )
        .await
    }

    /// Deletes exactly `name A|AAAA addr` and `rev PTR name`; absent records are success.
    pub async fn delete(
        &self,
        name: &str,
        addr: IpAddr,
        network: Option<IpNet>,
    ) -> Result<(), DnsError> {
        self.converge(addr, network, &[("name", name)], &[], OnFailure::Keep)
            .await
    }

    /// Moves the records of `addr` from the names `old` to the names `new`: afterwards every
    /// name of `new` has `name A|AAAA addr`, every name of `old` that is not in `new` has lost
    /// it, and (with `ptr = true`) the PTR of `addr` names the first of `new` (PTRs to every
    /// other name of either list are deleted). Deletes are RR-specific, as in
    /// [`DnsUpdater::delete`]: a record of these names pointing at another address is never
    /// touched. `old` empty registers, `new` empty removes.
    ///
    /// One round trip: one UPDATE message per forward zone (every name of that zone in it,
    /// deletes before adds) and one for the reverse zone, all sent at once and awaited together.
    ///
    /// With [`OnFailure::Revert`], when some of those messages fail, the ones that were applied
    /// are undone (their inverse is sent, best effort), so the names stay as they were, and the
    /// first failure is returned. With [`OnFailure::Keep`] what was applied stays.
    pub async fn set_names(
        &self,
        addr: IpAddr,
        network: Option<IpNet>,
        old: &[String],
        new: &[String],
        on_failure: OnFailure,
    ) -> Result<(), DnsError> {
        let old_fields: Vec<String> = (0..old.len()).map(|i| format!("old_names[{i}]")).collect();
        let new_fields: Vec<String> = (0..new.len()).map(|i| format!("names[{i}]")).collect();
        let old: Vec<(&str, &str)> = old_fields
            .iter()
            .map(String::as_str)
            .zip(old.iter().map(String::as_str))
            .collect();
        let new: Vec<(&str, &str)> = new_fields
            .iter()
            .map(String::as_str)
            .zip(new.iter().map(String::as_str))
            .collect();
        self.converge(addr, network, &old, &new, on_failure).await
    }

    /// [`DnsUpdater::set_names`] with the field each name came from (for errors).
    async fn converge(
        &self,
        addr: IpAddr,
        network: Option<IpNet>,
        old: &[(&str, &str)],
        new: &[(&str, &str)],
        on_failure: OnFailure,
    ) -> Result<(), DnsError> {
        // Everything is checked before anything is sent.
        let mut old_names: Vec<(Name, String)> = Vec::new();
        for (field, name) in old {
            let n = names::validate(field, name)?;
            let zone = self.forward_zone(field, &n)?;
            let owner = wire_name(field, &n)?;
            if !old_names.iter().any(|(o, _)| *o == owner) {
                old_names.push((owner, zone));
            }
        }
        let mut new_names: Vec<(Name, String)> = Vec::new();
        for (field, name) in new {
            let n = names::validate(field, name)?;
            let zone = self.forward_zone(field, &n)?;
            let owner = wire_name(field, &n)?;
            if !new_names.iter().any(|(o, _)| *o == owner) {
                new_names.push((owner, zone));
            }
        }
        let ptr_zone = self.ptr_zone(addr, network)?;
        // Per zone, in the order the zones first appear: (zone, deletes, adds).
        let mut messages: Vec<(String, Vec<Record>, Vec<Record>)> = Vec::new();
        fn slot(messages: &mut Vec<(String, Vec<Record>, Vec<Record>)>, zone: &str) -> usize {
            match messages.iter().position(|(z, _, _)| z == zone) {
                Some(i) => i,
                None => {
                    messages.push((zone.to_owned(), Vec::new(), Vec::new()));
                    messages.len() - 1
                }
            }
        }
        for (owner, zone) in &old_names {
            if !new_names.iter().any(|(n, _)| n == owner) {
                let i = slot(&mut messages, zone);
                messages[i].1.push(self.address_rr(owner, addr));
            }
        }
        for (owner, zone) in &new_names {
            let i = slot(&mut messages, zone);
            messages[i].2.push(self.address_rr(owner, addr));
        }
        if let Some(z) = &ptr_zone {
            let rev = wire_name("address", &names::reverse_name(addr))?;
            let first = new_names.first().map(|(n, _)| n.clone());
            let mut targets: Vec<&Name> = Vec::new();
            for (owner, _) in old_names.iter().chain(new_names.iter()) {
                if Some(owner) != first.as_ref() && !targets.contains(&owner) {
                    targets.push(owner);
                }
            }
            let deletes: Vec<Record> = targets.iter().map(|n| self.ptr_rr(&rev, n)).collect();
            let adds: Vec<Record> = first.iter().map(|n| self.ptr_rr(&rev, n)).collect();
            if !deletes.is_empty() || !adds.is_empty() {
                messages.push((z.clone(), deletes, adds));
            }
        }
        // All at once: the forward zones and the reverse zone in parallel.
        let sent = futures_util::future::join_all(messages.iter().map(|(zone, deletes, adds)| {
            let changes = deletes
                .iter()
                .cloned()
                .map(Change::Delete)
                .chain(adds.iter().cloned().map(Change::Add))
                .collect();
            self.update(zone, changes)
        }))
        .await;
        let Some(first_error) = sent.iter().find_map(|r| r.as_ref().err()).cloned() else {
            return Ok(());
        };
        if on_failure == OnFailure::Revert {
            // The inverse of each applied message: its adds deleted, its deletes added back.
            let undo = messages.iter().zip(&sent).filter(|(_, r)| r.is_ok()).map(
                |((zone, deletes, adds), _)| {
                    let changes = adds
                        .iter()
                        .cloned()
                        .map(Change::Delete)
                        .chain(deletes.iter().cloned().map(Change::Add))
                        .collect();
                    self.update(zone, changes)
                },
            );
            for r in futures_util::future::join_all(undo).await {
                if let Err(e) = r {
                    tracing::error!(address = %addr, error = %e,
                        "could not undo a DNS update applied before another one failed");
                }
            }
        }
        Err(first_error)
    }

    /// For `ipam-gateway check`: for each forward zone, each listed reverse zone and the reverse
    /// zones derived from `networks`, asks the servers for the zone's SOA with the TSIG key, and
    /// sends a no-op update (the RR-specific delete of an `A`/`PTR` record at
    /// `_ipamgw-check.<zone>`, a name no host can have). Nothing in a zone changes.
    pub async fn check(&self, networks: &[IpNet]) -> Vec<ZoneCheck> {
        let mut zones: Vec<(String, bool)> = self
            .s
            .forward_zones
            .iter()
            .map(|z| (z.clone(), false))
            .collect();
        match &self.s.reverse_zones {
            Some(list) => zones.extend(list.iter().map(|z| (z.clone(), true))),
            None => {
                for n in networks {
                    if let Ok(z) = names::reverse_zone_of("network", *n)
                        && !zones.iter().any(|(o, _)| o == &z)
                    {
                        zones.push((z, true));
                    }
                }
            }
        }
        let checks = zones.into_iter().map(|(zone, reverse)| async move {
            let serial = self.soa_serial(&zone).await;
            let update = match &serial {
                Ok(_) => self.probe(&zone, reverse).await,
                Err(e) => Err(e.clone()),
            };
            ZoneCheck {
                zone,
                serial,
                update,
            }
        });
        futures_util::future::join_all(checks).await
    }

    fn ptr_zone(&self, addr: IpAddr, network: Option<IpNet>) -> Result<Option<String>, DnsError> {
        if self.s.ptr {
            self.reverse_zone(addr, network).map(Some)
        } else {
            Ok(None)
        }
    }

    fn address_rr(&self, owner: &Name, addr: IpAddr) -> Record {
        let data = match addr {
            IpAddr::V4(a) => RData::A(A(a)),
            IpAddr::V6(a) => RData::AAAA(AAAA(a)),
        };
        Record::from_rdata(owner.clone(), self.s.ttl, data)
    }

    fn ptr_rr(&self, rev: &Name, target: &Name) -> Record {
        Record::from_rdata(rev.clone(), self.s.ttl, RData::PTR(PTR(target.clone())))
    }

    async fn soa_serial(&self, zone: &str) -> Result<u32, DnsError> {
        let origin = wire_name("zone", zone)?;
        let mut msg = Message::query();
        msg.metadata.recursion_desired = false;
        msg.add_query(Query::query(origin, RecordType::SOA));
        let resp = self.exchange(zone, msg).await?;
        if resp.response_code != ResponseCode::NoError {
            return Err(self.rejected(zone, &resp));
        }
        let server = "the server".to_owned();
        if !resp.metadata.authoritative {
            return Err(DnsError::Transport {
                zone: zone.to_owned(),
                server,
                reason: "the answer is not authoritative: the server is not a primary for the zone"
                    .to_owned(),
            });
        }
        resp.answers
            .iter()
            .find_map(|r| match &r.data {
                RData::SOA(soa) => Some(soa.serial),
                _ => None,
            })
            .ok_or(DnsError::Transport {
                zone: zone.to_owned(),
                server,
                reason: "no SOA in the answer: the zone does not exist there".to_owned(),
            })
    }

    async fn probe(&self, zone: &str, reverse: bool) -> Result<(), DnsError> {
        let owner = wire_name("zone", &format!("_ipamgw-check.{zone}"))?;
        let rr = if reverse {
            let target = wire_name("zone", "ipamgw-check.invalid")?;
            self.ptr_rr(&owner, &target)
        } else {
            // 192.0.2.0/24 is TEST-NET-1 (RFC 5737): no host has it.
            self.address_rr(&owner, IpAddr::from([192, 0, 2, 1]))
        };
        let msg = update_message(&wire_name("zone", zone)?, vec![Change::Delete(rr)]);
        let resp = self.exchange(zone, msg).await?;
        if resp.response_code == ResponseCode::NoError {
            Ok(())
        } else {
            Err(self.rejected(zone, &resp))
        }
    }

    /// Sends one update message to `zone` and records its result and latency.
    async fn update(&self, zone: &str, changes: Vec<Change>) -> Result<(), DnsError> {
        let started = Instant::now();
        let result = async {
            let msg = update_message(&wire_name("zone", zone)?, changes);
            let resp = self.exchange(zone, msg).await?;
            if resp.response_code == ResponseCode::NoError {
                Ok(())
            } else {
                Err(self.rejected(zone, &resp))
            }
        }
        .await;
        let label = match &result {
            Ok(()) => "ok",
            Err(e) => e.result_label(),
        };
        metrics::counter!("ipamgw_dns_updates_total", "result" => label).increment(1);
        metrics::histogram!("ipamgw_dns_update_duration_seconds", "result" => label)
            .record(started.elapsed().as_secs_f64());
        match &result {
            Ok(()) => tracing::debug!(zone, "DNS update applied"),
            Err(e) => tracing::warn!(zone, error = %e, "DNS update failed"),
        }
        result
    }

    fn rejected(&self, zone: &str, resp: &DnsResponse) -> DnsError {
        DnsError::Rejected {
            zone: zone.to_owned(),
            server: self.server_list(),
            answer: answer_text(resp),
        }
    }

    fn server_list(&self) -> String {
        self.s
            .servers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn signer(&self, zone: &str) -> Result<TSigner, DnsError> {
        let alg = match self.s.algorithm {
            TsigAlgorithm::HmacSha256 => HickoryTsig::HmacSha256,
            TsigAlgorithm::HmacSha512 => HickoryTsig::HmacSha512,
        };
        let key_name = wire_name("key_name", &self.s.key_name)?;
        TSigner::new(self.s.key_bytes(), alg, key_name, FUDGE_SECS).map_err(|e| {
            DnsError::Transport {
                zone: zone.to_owned(),
                server: self.server_list(),
                reason: format!("cannot sign with the TSIG key: {e}"),
            }
        })
    }

    /// Signs and sends a message, trying the servers in order within the configured timeout.
    /// Returns the server's answer, whatever its code, once its signature is checked.
    async fn exchange(&self, zone: &str, msg: Message) -> Result<DnsResponse, DnsError> {
        let deadline = Instant::now() + self.s.timeout;
        let signer = self.signer(zone)?;
        let mut last: Option<DnsError> = None;
        let count = self.s.servers.len();
        for (i, server) in self.s.servers.iter().enumerate() {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            // The servers left share the time left: a silent first server leaves time for the
            // next one.
            let budget = remaining / u32::try_from(count - i).unwrap_or(1);
            let attempt = async {
                let addrs = resolve(zone, server).await?;
                let mut err = None;
                for addr in addrs {
                    match send_one(zone, addr, &signer, msg.clone(), budget).await {
                        Ok(r) => return Ok(r),
                        Err(e) => err = Some(e),
                    }
                }
                Err(err.unwrap_or_else(|| DnsError::Transport {
                    zone: zone.to_owned(),
                    server: server.to_string(),
                    reason: "the name resolves to no address".to_owned(),
                }))
            };
            match tokio::time::timeout(budget, attempt).await {
                Ok(Ok(resp)) => return Ok(resp),
                Ok(Err(e)) => last = Some(e),
                Err(_) => {}
            }
        }
        Err(last.unwrap_or_else(|| DnsError::Timeout {
            zone: zone.to_owned(),
            servers: self.server_list(),
            after: self.s.timeout,
        }))
    }
}

async fn resolve(zone: &str, server: &ServerAddr) -> Result<Vec<SocketAddr>, DnsError> {
    match server {
        ServerAddr::Ip(a) => Ok(vec![*a]),
        ServerAddr::Host(h, p) => tokio::net::lookup_host((h.as_str(), *p))
            .await
            .map(Iterator::collect)
            .map_err(|e| DnsError::Transport {
                zone: zone.to_owned(),
                server: server.to_string(),
                reason: format!("cannot resolve the server's name: {e}"),
            }),
    }
}

async fn send_one(
    zone: &str,
    addr: SocketAddr,
    signer: &TSigner,
    mut msg: Message,
    timeout: Duration,
) -> Result<DnsResponse, DnsError> {
    let transport = |reason: String| DnsError::Transport {
        zone: zone.to_owned(),
        server: addr.to_string(),
        reason,
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let verifier = msg
        .finalize(signer, now)
        .map_err(|e| transport(format!("cannot sign the message: {e}")))?;
    // hickory's own timeout is set past ours: the caller's `tokio::time::timeout(budget)`
    // decides, so a silent server is always reported as a timeout (never as "no answer").
    let exchange = UdpClientStream::builder(addr, TokioRuntimeProvider::default())
        .with_timeout(Some(timeout + Duration::from_secs(1)))
        .exchange();
    let resp = exchange
        .send(DnsRequest::new(msg, DnsRequestOptions::default()))
        .next()
        .await
        .ok_or_else(|| transport("no answer".to_owned()))?
        .map_err(|e| transport(e.to_string()))?;
    // A TSIG error (BADSIG, BADKEY, BADTIME) comes in an unsigned answer: report it as the
    // server's answer, there is nothing to verify.
    if resp.signature().is_some_and(|s| s.data.error.is_some()) {
        return Ok(resp);
    }
    if let Some(mut v) = verifier
        && let Err(e) = v.verify(resp.as_buffer())
    {
        if resp.response_code != ResponseCode::NoError {
            // An error answer the server did not sign: its code is still the best explanation.
            return Ok(resp);
        }
        return Err(transport(format!(
            "the answer's TSIG signature does not verify: {e}"
        )));
    }
    Ok(resp)
}

fn update_message(zone: &Name, changes: Vec<Change>) -> Message {
    let mut zq = Query::new();
    zq.set_name(zone.clone())
        .set_query_class(DNSClass::IN)
        .set_query_type(RecordType::SOA);
    let mut msg = Message::query();
    msg.metadata.op_code = OpCode::Update;
    msg.metadata.recursion_desired = false;
    msg.add_query(zq);
    for c in changes {
        match c {
            Change::Add(r) => {
                msg.add_authority(r);
            }
            Change::Delete(mut r) => {
                // RFC 2136 §2.5.4: CLASS NONE, TTL 0, the RR's data.
                r.dns_class = DNSClass::NONE;
                r.ttl = 0;
                msg.add_authority(r);
            }
        }
    }
    msg
}

fn wire_name(field: &str, name: &str) -> Result<Name, DnsError> {
    Name::from_ascii(format!("{name}.")).map_err(|e| {
        DnsError::Name(NameError::new(
            field,
            format!("'{name}' is not a DNS name: {e}"),
        ))
    })
}

/// `NOTAUTH`, `REFUSED`, … with the TSIG error when there is one: `NOTAUTH (TSIG BADSIG)`.
fn answer_text(resp: &DnsResponse) -> String {
    let code = match resp.response_code {
        ResponseCode::NoError => "NOERROR".to_owned(),
        ResponseCode::FormErr => "FORMERR".to_owned(),
        ResponseCode::ServFail => "SERVFAIL".to_owned(),
        ResponseCode::NXDomain => "NXDOMAIN".to_owned(),
        ResponseCode::NotImp => "NOTIMP".to_owned(),
        ResponseCode::Refused => "REFUSED".to_owned(),
        ResponseCode::YXDomain => "YXDOMAIN".to_owned(),
        ResponseCode::YXRRSet => "YXRRSET".to_owned(),
        ResponseCode::NXRRSet => "NXRRSET".to_owned(),
        ResponseCode::NotAuth => "NOTAUTH".to_owned(),
        ResponseCode::NotZone => "NOTZONE".to_owned(),
        other => format!("{} ({})", u16::from(other), other),
    };
    match resp.signature().and_then(|s| s.data.error) {
        Some(e) => {
            let t = match e {
                TsigError::BadSig => "BADSIG".to_owned(),
                TsigError::BadKey => "BADKEY".to_owned(),
                TsigError::BadTime => "BADTIME".to_owned(),
                TsigError::BadTrunc => "BADTRUNC".to_owned(),
                TsigError::Unknown(n) => format!("error {n}"),
            };
            format!("{code} (TSIG {t})")
        }
        None => code,
    }
}
