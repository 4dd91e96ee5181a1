//! A stateful fake phpIPAM 1.8.2 on 127.0.0.1: sections, subnets, VLANs and addresses in memory,
//! the calls the gateway makes (and the error conventions of the recordings: 500 for a bad
//! password, 401 with `Location: /api//user/`, 404 for empty results, string ids in 201 answers,
//! `::` handed out in IPv6 subnets, network/broadcast in pools, MariaDB's column limits: a text
//! longer than its column is a 500 and nothing is written, fixtures 146–150).
//!
//! Every request runs under one lock, so `first_free` is atomic here as phpIPAM's unique key makes
//! it there. `tests/api/phpipam_fake.rs` checks its answers against the recorded fixtures.
//!
//! Custom field definitions (`GET addresses/custom_fields/`, `GET subnets/custom_fields/`,
//! fixtures 43, 44; 404 `No custom fields defined` when a table has none, 1.8.2
//! api/controllers/Addresses.php and Subnets.php) follow [`FakeState::address_fields`] and
//! [`FakeState::subnet_fields`]; a write naming an address field that is not defined is 400
//! `Invalid request key <k>` (fixture 63; the PATCH too: 1.8.2 Addresses.php `PATCH` runs
//! `validate_keys`). Apps in [`FakeState::read_only_apps`] (`app_permissions` 1) answer every
//! POST/PATCH/PUT/DELETE outside the `user` controller with 401 `invalid permissions` after the
//! token check and before any controller runs (fixture 126; 1.8.2 api/index.php).
//!
//! [`FakeState::lab`] is the lab of the recordings; [`FakeState::empty`] and the `add_…` seeding
//! helpers build any other inventory (sections, nameserver sets, VLANs, subnets with custom fields,
//! gateway addresses) the way an operator would in phpIPAM's UI — `support::matrix` seeds the
//! standard lab topology of the end-to-end suites with them.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use ipnet::IpNet;
use serde_json::{Map, Value, json};

#[derive(Debug, Clone)]
pub struct FakeSubnet {
    pub id: u64,
    pub cidr: IpNet,
    pub section: u64,
    pub description: String,
    pub master: u64,
    pub vlan: Option<u64>,
    pub nameserver: u64,
    pub is_pool: bool,
    pub is_folder: bool,
    pub vra_range: u64,
    /// Values of the extra subnet custom fields ([`FakeState::subnet_fields`]); unset ones are
    /// sent as `null`, as phpIPAM does.
    pub custom: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct FakeSection {
    pub id: u64,
    pub name: String,
    pub description: String,
}

#[derive(Debug, Clone)]
pub struct FakeVlan {
    pub id: u64,
    pub number: u64,
    pub name: String,
    pub description: String,
}

/// A nameserver set (phpIPAM's `nameservers` table): `namesrv1` is the `;`-joined list.
#[derive(Debug, Clone)]
pub struct FakeNameserver {
    pub id: u64,
    pub name: String,
    pub servers: Vec<String>,
    pub description: String,
}

#[derive(Debug, Clone)]
pub struct FakeAddress {
    pub id: u64,
    pub subnet: u64,
    pub ip: IpAddr,
    pub is_gateway: bool,
    pub description: Option<String>,
    pub hostname: Option<String>,
    pub mac: Option<String>,
    pub owner: Option<String>,
    pub vm_id: Option<String>,
    /// `note`, a `text` column (phpIPAM v1.8.2 `db/SCHEMA.sql`): every recorded address answer
    /// carries it (`fixtures/phpipam/74-addresses-get-by-id.json`, `null` there), and it is a
    /// key address writes accept (`ADDRESS_KEYS`). Stored and answered like `description`.
    pub note: Option<String>,
}

/// Addresses that have nothing to do with the gateway, kept as a rule rather than as records so
/// that 50,000 of them cost nothing to seed and no CPU in the fake's per-subnet scans (phpIPAM
/// reads a subnet's rows through an index on `subnetId`; only its filters over `addresses/`
/// read them all, and [`rows_read`] charges for that). Row `i` (0-based) is id
/// `first_id + i`, ip 172.16.0.0 + `i` + 1 in subnet `subnet`, owner `other-<i+1>`, host
/// `host-<i+1>.other.example`, description `unrelated`. They are answered by every read like
/// other rows; a write that touches them is refused (501) rather than modelled.
#[derive(Debug, Clone, Copy)]
pub struct Unrelated {
    pub subnet: u64,
    pub first_id: u64,
    pub count: u64,
}

impl Unrelated {
    const BASE: u32 = 0xAC10_0000; // 172.16.0.0

    fn row(&self, i: u64) -> FakeAddress {
        let n = i + 1;
        FakeAddress {
            id: self.first_id + i,
            subnet: self.subnet,
            ip: IpAddr::from((Self::BASE + n as u32).to_be_bytes()),
            is_gateway: false,
            description: Some("unrelated".into()),
            hostname: Some(format!("host-{n}.other.example")),
            mac: None,
            owner: Some(format!("other-{n}")),
            vm_id: None,
            note: None,
        }
    }

    fn by_id(&self, id: u64) -> Option<FakeAddress> {
        let i = id.checked_sub(self.first_id)?;
        (i < self.count).then(|| self.row(i))
    }

    fn by_ip(&self, ip: IpAddr) -> Option<FakeAddress> {
        let IpAddr::V4(v4) = ip else { return None };
        let n = u64::from(u32::from(v4).checked_sub(Self::BASE)?);
        (n >= 1 && n <= self.count).then(|| self.row(n - 1))
    }

    /// The JSON of the rows that pass the request's `filter_by`/`filter_value` (all without a
    /// filter), without building the others: the filter is applied to the one field.
    fn matching(&self, uri: &Uri) -> Vec<Value> {
        let q: HashMap<String, String> = uri
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let (Some(by), Some(value)) = (q.get("filter_by"), q.get("filter_value")) else {
            return (0..self.count)
                .map(|i| FakeState::address_json(&self.row(i)))
                .collect();
        };
        let constant = FakeState::address_json(&self.row(0))
            .get(by.as_str())
            .cloned();
        let varies = matches!(by.as_str(), "id" | "ip" | "owner" | "hostname");
        if !varies && !loosely_equal(constant.as_ref().and_then(text).as_deref(), value) {
            return Vec::new();
        }
        (0..self.count)
            .map(|i| self.row(i))
            .filter(|a| {
                let field = match by.as_str() {
                    "id" => Some(a.id.to_string()),
                    "ip" => Some(a.ip.to_string()),
                    "owner" => a.owner.clone(),
                    "hostname" => a.hostname.clone(),
                    _ => constant.as_ref().and_then(text),
                };
                loosely_equal(field.as_deref(), value)
            })
            .map(|a| FakeState::address_json(&a))
            .collect()
    }
}

#[derive(Debug, Default)]
pub struct FakeState {
    pub users: HashMap<String, String>,
    /// token → user
    pub tokens: HashMap<String, String>,
    /// In the order `GET /sections/` lists them.
    pub sections: Vec<FakeSection>,
    pub vlans: BTreeMap<u64, FakeVlan>,
    pub nameservers: BTreeMap<u64, FakeNameserver>,
    /// Subnet custom fields besides `custom_vRA_Range` (which every recorded subnet carries):
    /// each subnet answer has every one of them, `null` where unset.
    pub subnet_fields: Vec<String>,
    /// Address custom fields that are defined (the lab's `custom_vm_id`, fixture 44): only these
    /// `custom_…` keys are accepted in address writes.
    pub address_fields: Vec<String>,
    /// App ids whose `app_permissions` is 1 (read): writes answer 401 `invalid permissions`
    /// (the recordings' `gatewayro`, fixture 126).
    pub read_only_apps: Vec<String>,
    pub subnets: BTreeMap<u64, FakeSubnet>,
    pub addresses: BTreeMap<u64, FakeAddress>,
    /// Seeded with [`FakeState::add_unrelated_addresses`].
    pub unrelated: Option<Unrelated>,
    pub next_address: u64,
    pub next_subnet: u64,
    pub logins: usize,
    pub requests: usize,
    /// What each request costs, slept after the answer is computed and outside the lock (a real
    /// phpIPAM serves requests in parallel PHP workers): `latency`, plus `row_cost` for every
    /// row phpIPAM reads to answer it (see [`rows_read`]). Zero by default.
    pub latency: Duration,
    pub row_cost: Duration,
    /// Rows read by every request so far (see [`rows_read`]).
    pub rows: u64,
    /// `METHOD path?query` of every request, when set to `Some` (off by default: soak tests
    /// would grow it without bound).
    pub log: Option<Vec<String>>,
    token_seq: u64,
}

pub struct FakePhpipam {
    pub url: String,
    pub state: Arc<Mutex<FakeState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakePhpipam {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

fn from_u128(v6: bool, n: u128) -> IpAddr {
    if v6 {
        IpAddr::from(n.to_be_bytes())
    } else {
        IpAddr::from(u32::try_from(n).expect("v4").to_be_bytes())
    }
}

fn subnet(id: u64, cidr: &str, description: &str) -> FakeSubnet {
    FakeSubnet {
        id,
        cidr: cidr.parse().expect("cidr"),
        section: 3,
        description: description.into(),
        master: 0,
        vlan: None,
        nameserver: 0,
        is_pool: false,
        is_folder: false,
        vra_range: 0,
        custom: BTreeMap::new(),
    }
}

impl FakeState {
    /// The lab of the recordings: section Gateway (3), VLAN 100 (id 3), nameservers (id 2),
    /// subnets 7 (10.10.0.0/24), 8 (10.20.0.0/28), 9 (2001:db8:10::/64), 10 (container
    /// 10.30.0.0/16), 11 (pool 10.50.0.0/29), gateways 10.10.0.1 (id 11) and 2001:db8:10::1 (12).
    pub fn lab() -> Self {
        let mut s = FakeState {
            next_address: 13,
            next_subnet: 12,
            address_fields: vec!["custom_vm_id".into()],
            read_only_apps: vec!["gatewayro".into()],
            ..FakeState::default()
        };
        s.users.insert("Admin".into(), "phpipam-lab".into());
        s.users.insert("gwtest".into(), "gwtest-lab".into());
        for (id, name, description) in [
            (2, "IPv6", "Section for IPv6 addresses"),
            (3, "Gateway", "Section for IPAM gateway tests"),
            (1, "Customers", "Section for customers"),
        ] {
            s.sections.push(FakeSection {
                id,
                name: name.into(),
                description: description.into(),
            });
        }
        s.vlans.insert(
            3,
            FakeVlan {
                id: 3,
                number: 100,
                name: "gw-vlan-100".into(),
                description: "Gateway test VLAN".into(),
            },
        );
        s.nameservers.insert(
            2,
            FakeNameserver {
                id: 2,
                name: "Lab DNS".into(),
                servers: vec!["10.10.0.53".into(), "10.10.0.54".into()],
                description: "Lab nameservers".into(),
            },
        );
        let mut s7 = subnet(7, "10.10.0.0/24", "Gateway test /24");
        s7.vlan = Some(3);
        s7.nameserver = 2;
        s7.vra_range = 1;
        let mut s8 = subnet(8, "10.20.0.0/28", "Tiny /28 for exhaustion tests");
        s8.vra_range = 1;
        let mut s9 = subnet(9, "2001:db8:10::/64", "Gateway test IPv6 /64");
        s9.nameserver = 2;
        s9.vra_range = 1;
        let s10 = subnet(10, "10.30.0.0/16", "Container for on-demand networks");
        let mut s11 = subnet(
            11,
            "10.50.0.0/29",
            "isPool=1 subnet (network+broadcast usable)",
        );
        s11.is_pool = true;
        for sn in [s7, s8, s9, s10, s11] {
            s.subnets.insert(sn.id, sn);
        }
        for (id, sid, ip, host) in [
            (11, 7, "10.10.0.1", "gw.lab.local"),
            (12, 9, "2001:db8:10::1", "gw6.lab.local"),
        ] {
            s.addresses.insert(
                id,
                FakeAddress {
                    id,
                    subnet: sid,
                    ip: ip.parse().expect("ip"),
                    is_gateway: true,
                    description: Some("Default gateway".into()),
                    hostname: Some(host.into()),
                    mac: None,
                    owner: None,
                    vm_id: None,
                    note: None,
                },
            );
        }
        s
    }

    /// No sections, subnets or addresses; the users of the lab (`Admin`, `gwtest`). Seed it with
    /// the `add_…` helpers.
    pub fn empty() -> Self {
        let mut s = FakeState {
            next_address: 1,
            next_subnet: 1,
            address_fields: vec!["custom_vm_id".into()],
            read_only_apps: vec!["gatewayro".into()],
            ..FakeState::default()
        };
        s.users.insert("Admin".into(), "phpipam-lab".into());
        s.users.insert("gwtest".into(), "gwtest-lab".into());
        s
    }

    /// A new section; its id.
    pub fn add_section(&mut self, name: &str, description: &str) -> u64 {
        let id = self.sections.iter().map(|x| x.id).max().unwrap_or(0) + 1;
        self.sections.push(FakeSection {
            id,
            name: name.into(),
            description: description.into(),
        });
        id
    }

    /// A new VLAN (phpIPAM's `vlanId` is the row id, `number` the 802.1Q tag); its id.
    pub fn add_vlan(&mut self, number: u64, name: &str) -> u64 {
        let id = self.vlans.keys().max().copied().unwrap_or(0) + 1;
        self.vlans.insert(
            id,
            FakeVlan {
                id,
                number,
                name: name.into(),
                description: String::new(),
            },
        );
        id
    }

    /// A new nameserver set; its id.
    pub fn add_nameserver(&mut self, name: &str, servers: &[&str]) -> u64 {
        let id = self.nameservers.keys().max().copied().unwrap_or(0) + 1;
        self.nameservers.insert(
            id,
            FakeNameserver {
                id,
                name: name.into(),
                servers: servers.iter().map(|s| (*s).to_owned()).collect(),
                description: String::new(),
            },
        );
        id
    }

    /// Declares a subnet custom field (`custom_…`): from now on every subnet answer carries it.
    pub fn add_subnet_field(&mut self, name: &str) {
        assert!(
            name.starts_with("custom_"),
            "phpIPAM custom fields are custom_…"
        );
        if !self.subnet_fields.iter().any(|f| f == name) {
            self.subnet_fields.push(name.to_owned());
        }
    }

    /// A new subnet in a section (`vRA_Range` 0, no VLAN, no nameservers, no custom values: set
    /// them on the returned subnet); its id.
    pub fn add_subnet(
        &mut self,
        section: u64,
        cidr: &str,
        description: &str,
        seed: impl FnOnce(&mut FakeSubnet),
    ) -> u64 {
        assert!(
            self.sections.iter().any(|x| x.id == section),
            "no section {section}"
        );
        let id = self.next_subnet;
        self.next_subnet += 1;
        let mut sn = subnet(id, cidr, description);
        sn.section = section;
        seed(&mut sn);
        for k in sn.custom.keys() {
            assert!(
                self.subnet_fields.contains(k),
                "custom field {k} is not declared (add_subnet_field)"
            );
        }
        self.subnets.insert(id, sn);
        id
    }

    /// The subnet's gateway address (an address record with `is_gateway = 1`); its id.
    pub fn add_gateway(&mut self, subnet: u64, ip: &str) -> u64 {
        let sn = self.subnets.get(&subnet).expect("subnet");
        let ip: IpAddr = ip.parse().expect("gateway ip");
        assert!(sn.cidr.contains(&ip), "{ip} is not in {}", sn.cidr);
        let id = self.next_address;
        self.next_address += 1;
        self.addresses.insert(
            id,
            FakeAddress {
                id,
                subnet,
                ip,
                is_gateway: true,
                description: Some("Default gateway".into()),
                hostname: None,
                mac: None,
                owner: None,
                vm_id: None,
                note: None,
            },
        );
        id
    }

    /// `n` addresses that have nothing to do with the gateway ([`Unrelated`]): a section
    /// `unrelated` with one subnet `172.16.0.0/12` (not a vRA range, so never exposed) holding
    /// 172.16.0.1, 172.16.0.2, … owned by `other-<i>`. Every filter over `addresses/` reads them
    /// ([`rows_read`]). Seeding costs nothing, whatever `n`. Once per fake; returns the subnet.
    pub fn add_unrelated_addresses(&mut self, n: u32) -> u64 {
        assert!(
            self.unrelated.is_none(),
            "unrelated addresses are seeded once"
        );
        assert!(n < (1 << 20) - 2, "{n} addresses do not fit in a /12");
        let section = self.add_section("unrelated", "addresses the gateway never exposes");
        let subnet = self.add_subnet(section, "172.16.0.0/12", "unrelated", |_| {});
        self.unrelated = Some(Unrelated {
            subnet,
            first_id: self.next_address,
            count: u64::from(n),
        });
        self.next_address += u64::from(n);
        subnet
    }

    fn unrelated_in(&self, subnet: u64) -> u64 {
        self.unrelated
            .filter(|u| u.subnet == subnet)
            .map_or(0, |u| u.count)
    }

    fn section_json(sec: &FakeSection) -> Value {
        json!({"id": sec.id, "name": sec.name, "description": sec.description, "masterSection": 0,
            "permissions": null, "strictMode": "1", "subnetOrdering": null, "order": null,
            "editDate": null, "showSubnet": 1, "showVLAN": 0, "showVRF": 0,
            "showSupernetOnly": 0, "DNS": null})
    }

    fn gateway_of(&self, subnet: u64) -> Option<&FakeAddress> {
        self.addresses
            .values()
            .find(|a| a.subnet == subnet && a.is_gateway)
    }

    fn capacity(sn: &FakeSubnet) -> u128 {
        let bits = u32::from(sn.cidr.max_prefix_len() - sn.cidr.prefix_len());
        let size = if bits >= 128 {
            u128::MAX
        } else {
            1u128 << bits
        };
        if sn.is_pool || matches!(sn.cidr, IpNet::V6(_)) || bits <= 1 {
            size
        } else {
            size - 2
        }
    }

    fn subnet_json(&self, sn: &FakeSubnet, with_details: bool) -> Value {
        let mut v = json!({"id": sn.id, "subnet": sn.cidr.network().to_string(),
            "mask": sn.cidr.prefix_len().to_string(), "sectionId": sn.section,
            "description": sn.description, "linked_subnet": null, "firewallAddressObject": null,
            "vrfId": null, "masterSubnetId": sn.master, "allowRequests": 0, "vlanId": sn.vlan,
            "showName": 0, "device": 0, "permissions": null, "pingSubnet": 0,
            "discoverSubnet": 0, "resolveDNS": 0, "DNSrecursive": 0, "DNSrecords": 0,
            "nameserverId": sn.nameserver, "scanAgent": null, "customer_id": null,
            "isFolder": u8::from(sn.is_folder), "isFull": 0, "isPool": u8::from(sn.is_pool),
            "tag": 2, "threshold": 0, "location": null, "editDate": null, "lastScan": null,
            "lastDiscovery": null, "custom_vRA_Range": sn.vra_range});
        for f in &self.subnet_fields {
            v[f.as_str()] = sn.custom.get(f).map_or(Value::Null, |t| json!(t));
        }
        if with_details {
            if let Some(gw) = self.gateway_of(sn.id) {
                v["gatewayId"] = json!(gw.id);
            }
            if let Some(ns) = self.nameservers.get(&sn.nameserver) {
                v["nameservers"] = json!({"id": ns.id, "name": ns.name,
                    "namesrv1": ns.servers.join(";"), "description": ns.description,
                    "permissions": "3", "editDate": null});
            }
            let used = self
                .addresses
                .values()
                .filter(|a| a.subnet == sn.id)
                .count() as u128
                + u128::from(self.unrelated_in(sn.id));
            let max = Self::capacity(sn);
            let free = max.saturating_sub(used);
            v["usage"] = json!({"Used": used as u64, "Reserved": 0, "Used_percent": 0,
                "used": used.to_string(), "Reserved_percent": 0,
                "freehosts": free.to_string(), "freehosts_percent": 100,
                "maxhosts": max.to_string()});
        }
        v
    }

    fn address_json(a: &FakeAddress) -> Value {
        json!({"id": a.id, "subnetId": a.subnet, "ip": a.ip.to_string(),
            "is_gateway": u8::from(a.is_gateway), "description": a.description,
            "hostname": a.hostname, "mac": a.mac, "owner": a.owner, "tag": 2, "deviceId": null,
            "location": null, "port": null, "note": a.note, "lastSeen": "1970-01-01 00:00:01",
            "excludePing": 0, "PTRignore": 0, "PTR": 0, "firewallAddressObject": null,
            "editDate": null, "customer_id": null, "custom_vm_id": a.vm_id})
    }

    /// The assignable range as phpIPAM 1.8.2 computes it.
    fn assignable(sn: &FakeSubnet) -> (u128, u128) {
        let (lo, hi) = (to_u128(sn.cidr.network()), to_u128(sn.cidr.broadcast()));
        match sn.cidr {
            IpNet::V4(n) if !sn.is_pool && n.prefix_len() < 31 => (lo + 1, hi - 1),
            _ => (lo, hi),
        }
    }

    fn first_free(&self, sn: &FakeSubnet) -> Option<IpAddr> {
        let (lo, hi) = Self::assignable(sn);
        let mut used: Vec<u128> = self
            .addresses
            .values()
            .filter(|a| a.subnet == sn.id)
            .map(|a| to_u128(a.ip))
            .collect();
        used.sort_unstable();
        let mut c = lo;
        for u in used {
            if u == c {
                c += 1;
            } else if u > c {
                break;
            }
        }
        (c <= hi).then(|| from_u128(matches!(sn.cidr, IpNet::V6(_)), c))
    }
}

fn vlan_json(v: &FakeVlan) -> Value {
    json!({"vlanId": v.id, "domainId": 1, "name": v.name, "number": v.number,
        "description": v.description, "editDate": null, "customer_id": null})
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.into()),
        _ => None,
    }
}

fn answer(code: u16, fields: Value) -> Response {
    let mut body = Map::new();
    body.insert("code".into(), json!(code));
    body.insert("success".into(), json!((200..300).contains(&code)));
    if let Value::Object(extra) = fields {
        for (k, v) in extra {
            body.insert(k, v);
        }
    }
    body.insert("time".into(), json!(0.001));
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        Value::Object(body).to_string(),
    )
        .into_response();
    if code == 401 {
        resp.headers_mut().insert(
            header::LOCATION,
            header::HeaderValue::from_static("/api//user/"),
        );
    }
    resp
}

fn error(code: u16, message: &str) -> Response {
    answer(code, json!({"message": message}))
}

/// MariaDB strict mode refusing a value longer than its column (phpIPAM 1.8.2 passes the
/// exception text on): RECORDED for `ipaddresses` (fixtures 147–150: status 500, this message,
/// nothing written).
fn too_long(column: &str) -> Response {
    error(
        500,
        &format!(
            "Error: SQLSTATE[22001]: String data, right truncated: 1406 Data too long for column \
             '{column}' at row 1"
        ),
    )
}

/// The `ipaddresses` text columns with their `varchar` lengths (phpIPAM v1.8.2 `db/SCHEMA.sql`),
/// in the table's column order. A varchar(N) counts characters, not bytes (utf8mb4), so the fake
/// counts `char`s. RECORDED: description 64 passes (146), 65 fails (147, and on PATCH 150);
/// owner 129 fails (148); hostname 256 fails (149). mac 20 is from the schema (a longer MAC is
/// refused as invalid before it reaches the table). When several are too long, naming the first
/// in column order is an assumption (not recorded).
const ADDRESS_COLUMN_LIMITS: &[(&str, usize)] = &[
    ("description", 64),
    ("hostname", 255),
    ("mac", 20),
    ("owner", 128),
];

/// `ipaddresses.note` is `text` (phpIPAM v1.8.2 `db/SCHEMA.sql`): at most 65,535 bytes.
/// INFERRED, not recorded: the same strict-mode 500 as for the varchar columns.
const ADDRESS_NOTE_BYTES: usize = 65_535;

/// The first column of `a` that does not fit, if any.
fn address_too_long(a: &FakeAddress) -> Option<&'static str> {
    let varchar = ADDRESS_COLUMN_LIMITS.iter().find_map(|&(column, max)| {
        let value = match column {
            "description" => &a.description,
            "hostname" => &a.hostname,
            "mac" => &a.mac,
            _ => &a.owner,
        };
        value
            .as_deref()
            .is_some_and(|v| v.chars().count() > max)
            .then_some(column)
    });
    // `note` comes after these in the table (db/SCHEMA.sql).
    let note = || {
        a.note
            .as_deref()
            .is_some_and(|n| n.len() > ADDRESS_NOTE_BYTES)
            .then_some("note")
    };
    varchar.or_else(note)
}

/// `subnets.description` is `text` (phpIPAM v1.8.2 `db/SCHEMA.sql`): at most 65,535 bytes.
/// INFERRED, not recorded: the same strict-mode 500 as for addresses (`subnet_add` in
/// `class.Subnets.php` passes the exception text on the same way), nothing created.
const SUBNET_DESCRIPTION_BYTES: usize = 65_535;

fn data(v: Value) -> Response {
    answer(200, json!({"data": v}))
}

fn created(message: &str, id: u64, location: String, d: Option<Value>) -> Response {
    let mut fields = json!({"message": message, "id": id.to_string()});
    if let Some(d) = d {
        fields["data"] = d;
    }
    let mut resp = answer(201, fields);
    if let Ok(v) = header::HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

fn filtered(uri: &Uri, items: Vec<Value>, empty: &str) -> Response {
    let q: HashMap<String, String> = uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let Some(by) = q.get("filter_by") else {
        return if items.is_empty() {
            error(404, empty)
        } else {
            data(Value::Array(items))
        };
    };
    let Some(value) = q.get("filter_value") else {
        return error(400, "Missing filter_value");
    };
    if items.first().and_then(|f| f.get(by)).is_none() {
        return error(400, "Invalid filter_by");
    }
    let hits: Vec<Value> = items
        .into_iter()
        .filter(|i| loosely_equal(i.get(by).and_then(text).as_deref(), value))
        .collect();
    if hits.is_empty() {
        error(404, "No results (filter applied)")
    } else {
        data(Value::Array(hits))
    }
}

/// phpIPAM's filter keeps a record unless `$r->{filter_by} != filter_value` (PHP's loose
/// comparison; `api/controllers/Common.php` `filter_result`, default `filter_match=full`). Under
/// PHP 8 two numeric strings compare as numbers (`"10" == "1e1"`, `"1" == "01"`), other strings
/// byte for byte, and `null` equals only the empty string (which phpIPAM refuses as a value).
fn loosely_equal(field: Option<&str>, value: &str) -> bool {
    let Some(field) = field else {
        return value.is_empty();
    };
    let number = |t: &str| {
        let t = t.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
        let t = t.trim_end_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
        let numeric = !t.is_empty()
            && t.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c))
            && t.chars().any(|c| c.is_ascii_digit());
        numeric.then(|| t.parse::<f64>().ok()).flatten()
    };
    match (number(field), number(value)) {
        (Some(a), Some(b)) => a == b,
        _ => field == value,
    }
}

/// Keys `POST subnets/` accepts besides custom fields (the columns of phpIPAM's `subnets` table);
/// any other key is phpIPAM's 400 `Invalid request key <k>`.
const SUBNET_KEYS: &[&str] = &[
    "subnet",
    "mask",
    "sectionId",
    "description",
    "linked_subnet",
    "firewallAddressObject",
    "vrfId",
    "masterSubnetId",
    "allowRequests",
    "vlanId",
    "showName",
    "device",
    "permissions",
    "pingSubnet",
    "discoverSubnet",
    "resolveDNS",
    "DNSrecursive",
    "DNSrecords",
    "nameserverId",
    "scanAgent",
    "customer_id",
    "isFolder",
    "isFull",
    "isPool",
    "tag",
    "threshold",
    "location",
    "custom_vRA_Range",
];

/// `POST subnets/`: creates the subnet given by `subnet` + `mask`, checked in the order of
/// phpIPAM 1.8.2's `validate_create_parameters` (CIDR, network address, master, section,
/// overlap, VLAN, then the keys). Every section of the fake is in strict mode, like `Gateway`.
///
/// RECORDED (fixtures 15–22): 201 `{"message": "Subnet created", "id": "<string>", "data":
/// "<cidr>"}` with `Location`; a root subnet overlapping a subnet of its section → 409
/// `Subnet <cidr> overlaps with <cidr> (<description>) in section <name>` (20); a host address →
/// 400 `IP address cannot be subnet! (Consider using <network>)` (21); an unknown section → 400
/// `Section id (<id>) does not exist` (22).
///
/// INFERRED, not recorded (read from phpIPAM v1.8.2's `api/controllers/Subnets.php` and
/// `functions/classes/class.Subnets.php`): under a `masterSubnetId` the subnet must lie inside
/// the master and differ from it (409 `Subnet is not within boundaries of its master subnet`;
/// an unknown master is 404 `Master Subnet does not exist (id=<id>)`) and must not overlap the
/// master's other children (409 `Subnet overlaps with <cidr>`, a shorter message than the root
/// one); the CIDR syntax, missing-section, unknown-VLAN and unknown-key answers. Folders
/// (`isFolder=1`) and VRFs are not modelled.
fn create_subnet(s: &mut FakeState, body: &Map<String, Value>, app: &str) -> Response {
    let field = |k: &str| {
        body.get(k)
            .and_then(text)
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
    };
    if field("isFolder").as_deref() == Some("1") {
        return error(501, "fake phpIPAM: folders are not modelled");
    }
    let (Some(addr), Some(mask)) = (field("subnet"), field("mask")) else {
        return error(400, "Invalid CIDR format!");
    };
    let Ok(addr) = addr.parse::<IpAddr>() else {
        return error(400, "Invalid Network!");
    };
    let Some(net) = mask
        .parse::<u8>()
        .ok()
        .and_then(|m| IpNet::new(addr, m).ok())
    else {
        return error(400, "Invalid netmask");
    };
    if net.network() != addr {
        let hint = match net {
            IpNet::V4(_) => net.network().to_string(),
            IpNet::V6(_) => net.trunc().to_string(),
        };
        return error(
            400,
            &format!("IP address cannot be subnet! (Consider using {hint})"),
        );
    }
    let net = net.trunc();
    let master = match field("masterSubnetId").filter(|m| m != "0") {
        None => None,
        Some(m) => match m.parse::<u64>().ok().and_then(|i| s.subnets.get(&i)) {
            Some(sn) => Some(sn.clone()),
            None => return error(404, &format!("Master Subnet does not exist (id={m})")),
        },
    };
    if let Some(m) = &master
        && !m.is_folder
        && (m.cidr == net || !m.cidr.contains(&net))
    {
        return error(409, "Subnet is not within boundaries of its master subnet");
    }
    let Some(section) = field("sectionId") else {
        return error(400, "Invalid Section ()");
    };
    let Ok(section_id) = section.parse::<u64>() else {
        return error(400, &format!("Section Id must be numeric ({section})"));
    };
    let Some(section) = s.sections.iter().find(|x| x.id == section_id).cloned() else {
        return error(400, &format!("Section id ({section_id}) does not exist"));
    };
    let overlaps =
        |c: &FakeSubnet| !c.is_folder && (c.cidr.contains(&net) || net.contains(&c.cidr));
    match &master {
        // Root: every subnet of the section, most specific first (phpIPAM's ORDER BY mask DESC).
        None => {
            let mut hits: Vec<&FakeSubnet> = s
                .subnets
                .values()
                .filter(|c| c.section == section_id && overlaps(c))
                .collect();
            hits.sort_by_key(|c| {
                (
                    std::cmp::Reverse(c.cidr.prefix_len()),
                    to_u128(c.cidr.network()),
                )
            });
            if let Some(c) = hits.first() {
                return error(
                    409,
                    &format!(
                        "Subnet {net} overlaps with {} ({}) in section {}",
                        c.cidr, c.description, section.name
                    ),
                );
            }
        }
        // Nested (INFERRED): only the master's direct children count.
        Some(m) if !m.is_folder => {
            if let Some(c) = s.subnets.values().find(|c| c.master == m.id && overlaps(c)) {
                return error(409, &format!("Subnet overlaps with {}", c.cidr));
            }
        }
        Some(_) => {}
    }
    let vlan = match field("vlanId") {
        None => None,
        Some(v) => match v.parse::<u64>().ok().filter(|i| s.vlans.contains_key(i)) {
            Some(i) => Some(i),
            None => return error(404, "Vlan does not exist"),
        },
    };
    if let Some(k) = body
        .keys()
        .find(|k| !SUBNET_KEYS.contains(&k.as_str()) && !s.subnet_fields.contains(k))
    {
        return error(400, &format!("Invalid request key {k}"));
    }
    let description = body.get("description").and_then(text).unwrap_or_default();
    if description.len() > SUBNET_DESCRIPTION_BYTES {
        return too_long("description");
    }
    let id = s.next_subnet;
    s.next_subnet += 1;
    let mut sn = subnet(id, &net.to_string(), &description);
    sn.section = section_id;
    sn.master = master.map_or(0, |m| m.id);
    sn.vlan = vlan;
    sn.nameserver = field("nameserverId")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    sn.is_pool = field("isPool").as_deref() == Some("1");
    sn.vra_range = field("custom_vRA_Range")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    for f in &s.subnet_fields {
        if let Some(v) = field(f) {
            sn.custom.insert(f.clone(), v);
        }
    }
    s.subnets.insert(id, sn);
    created(
        "Subnet created",
        id,
        format!("/api/{app}/subnets/{id}/"),
        Some(json!(net.to_string())),
    )
}

const ADDRESS_KEYS: &[&str] = &[
    "ip",
    "ip_addr",
    "subnetId",
    "is_gateway",
    "description",
    "hostname",
    "mac",
    "owner",
    "tag",
    "note",
    "excludePing",
    "PTRignore",
];

/// The first key of an address write that phpIPAM does not know: neither a column nor a defined
/// custom field (fixture 63).
fn unknown_address_key<'a>(s: &FakeState, body: &'a Map<String, Value>) -> Option<&'a String> {
    body.keys()
        .find(|k| !ADDRESS_KEYS.contains(&k.as_str()) && !s.address_fields.contains(k))
}

/// A custom field definition as `GET …/custom_fields/` lists it (fixtures 43, 44).
fn custom_field_json(name: &str, kind: &str, default: Value) -> Value {
    json!({"name": name, "type": kind, "Comment": "", "Null": "YES", "Default": default})
}

fn normalise_mac(m: &str) -> Option<String> {
    let hex: String = m.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    if hex.len() != 12
        || m.chars()
            .any(|c| !c.is_ascii_hexdigit() && !":-.".contains(c))
    {
        return None;
    }
    let lower = hex.to_ascii_lowercase();
    Some(
        (0..6)
            .map(|i| &lower[i * 2..i * 2 + 2])
            .collect::<Vec<_>>()
            .join(":"),
    )
}

/// Applies body fields to an address; `Err` is phpIPAM's 400 message.
fn apply(a: &mut FakeAddress, body: &Map<String, Value>) -> Result<(), &'static str> {
    for (k, v) in body {
        let t = text(v).filter(|s| !s.is_empty());
        match k.as_str() {
            "description" => a.description = t,
            "hostname" => a.hostname = t,
            "owner" => a.owner = t,
            "custom_vm_id" => a.vm_id = t,
            "note" => a.note = t,
            "is_gateway" => a.is_gateway = t.as_deref() == Some("1"),
            "mac" => match t {
                Some(m) => match normalise_mac(&m) {
                    Some(n) => a.mac = Some(n),
                    None => return Err("Invalid MAC address"),
                },
                None => a.mac = None,
            },
            _ => {}
        }
    }
    Ok(())
}

impl FakePhpipam {
    pub async fn start() -> Self {
        Self::start_with(FakeState::lab()).await
    }

    pub async fn start_with(state: FakeState) -> Self {
        let state = Arc::new(Mutex::new(state));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake phpIPAM");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakePhpipam { url, state, task }
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut FakeState) -> T) -> T {
        f(&mut self.state.lock().expect("fake state"))
    }

    /// Makes every token invalid (as phpIPAM does when tokens expire).
    pub fn expire_tokens(&self) {
        self.with(|s| s.tokens.clear());
    }

    pub fn logins(&self) -> usize {
        self.with(|s| s.logins)
    }

    pub fn addresses_in(&self, subnet: u64) -> Vec<FakeAddress> {
        self.with(|s| {
            let unrelated = s
                .unrelated
                .filter(|u| u.subnet == subnet)
                .map(|u| (0..u.count).map(move |i| u.row(i)));
            s.addresses
                .values()
                .filter(|a| a.subnet == subnet)
                .cloned()
                .chain(unrelated.into_iter().flatten())
                .collect()
        })
    }

    /// Logs in like a client would and returns the token.
    pub fn login(&self, user: &str) -> String {
        self.with(|s| issue_token(s, user))
    }
}

fn issue_token(s: &mut FakeState, user: &str) -> String {
    if let Some((t, _)) = s.tokens.iter().find(|(_, u)| u.as_str() == user) {
        return t.clone();
    }
    s.token_seq += 1;
    let t = format!("fake-token-{:013}", s.token_seq);
    s.tokens.insert(t.clone(), user.to_owned());
    t
}

/// Rows phpIPAM 1.8.2 reads to answer a request — what its cost grows with (read in
/// github.com/phpipam/phpipam at tag v1.8.2):
/// - `GET addresses/` with or without `filter_by`: every address row of the IPAM.
///   `api/controllers/Addresses.php` `GET()` calls `fetch_all_objects("ipaddresses")`
///   (`functions/classes/class.Common.php`: `SELECT *` of the whole table, each row cached as a
///   PHP object), and only then `prepare_result` → `filter_result`
///   (`api/controllers/Common.php`) drops the rows that do not match, in PHP.
/// - `GET subnets/{id}/addresses/` (filtered or not): that subnet's rows.
///   `api/controllers/Subnets.php` `read_subnet_addresses()` →
///   `class.Addresses.php` `fetch_subnet_addresses()` (`WHERE subnetId = ?`), then the same
///   PHP filter.
/// - `POST addresses/first_free/{id}/`: that subnet's rows (`class.Addresses.php`
///   `get_first_available_address()` reads them through `fetch_subnet_addresses()`).
/// - `GET sections/{id}/subnets/`: one row per subnet of the section
///   (`api/controllers/Sections.php` `GET()`: `fetch_section_subnets()`, then per subnet a
///   gateway query and `calculate_subnet_usage()`, which counts in SQL).
/// - `GET vlan/`: every VLAN (`api/controllers/Vlans.php` `GET()`: `fetch_all_objects("vlans")`).
/// - `GET addresses/search/{ip}/`: the rows holding that ip (`fetch_multiple_objects`, `WHERE`).
/// - anything else: one row.
pub fn rows_read(s: &FakeState, method: &Method, segs: &[&str]) -> u64 {
    let count = |f: &dyn Fn(&FakeAddress) -> bool| s.addresses.values().filter(|a| f(a)).count();
    let id = |i: usize| segs.get(i).and_then(|t| t.parse::<u64>().ok());
    let rows = match (method.as_str(), segs.get(2..).unwrap_or_default()) {
        ("GET", ["addresses"] | ["addresses", "all"]) => {
            s.addresses.len() + s.unrelated.map_or(0, |u| u.count as usize)
        }
        ("GET", ["subnets", _, "addresses", ..]) | ("POST", ["addresses", "first_free", _]) => {
            let sid = id(3);
            count(&|a| Some(a.subnet) == sid) + sid.map_or(0, |i| s.unrelated_in(i) as usize)
        }
        ("GET", ["sections", _, "subnets"]) => {
            let sec = id(3);
            s.subnets
                .values()
                .filter(|sn| Some(sn.section) == sec)
                .count()
        }
        ("GET", ["vlan" | "vlans"]) => s.vlans.len(),
        ("GET", ["addresses", "search", ip]) => {
            let ip = ip.parse::<IpAddr>().ok();
            count(&|a| Some(a.ip) == ip)
                + usize::from(ip.and_then(|ip| s.unrelated?.by_ip(ip)).is_some())
        }
        _ => 1,
    };
    rows.max(1) as u64
}

async fn handle(
    State(state): State<Arc<Mutex<FakeState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (resp, cost) = {
        let mut s = state.lock().expect("fake state");
        let segs: Vec<&str> = uri.path().split('/').filter(|p| !p.is_empty()).collect();
        // Counted before the request changes anything (a DELETE reads the row it deletes).
        let rows = rows_read(&s, &method, &segs);
        s.rows += rows;
        if let Some(log) = s.log.as_mut() {
            log.push(format!("{method} {uri}"));
        }
        let cost = s.latency + s.row_cost * u32::try_from(rows).unwrap_or(u32::MAX);
        (respond(&mut s, method, uri, headers, body), cost)
    };
    if !cost.is_zero() {
        tokio::time::sleep(cost).await;
    }
    resp
}

fn respond(
    s: &mut FakeState,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.requests += 1;
    let segs: Vec<&str> = uri.path().split('/').filter(|p| !p.is_empty()).collect();
    if segs.first() != Some(&"api") || segs.len() < 2 {
        return error(400, "Invalid application id");
    }
    let rest: Vec<&str> = segs[2..].to_vec();
    let Some(controller) = rest.first().copied() else {
        return error(400, "Request is not valid");
    };
    let body: Map<String, Value> = if body.is_empty() {
        Map::new()
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(m)) => m,
            _ => return error(400, "Invalid JSON: Syntax error"),
        }
    };

    if controller == "user" {
        if method != Method::POST {
            return error(501, "Method not implemented");
        }
        let Some(auth) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .and_then(|b| String::from_utf8(b).ok())
        else {
            return error(400, "Please provide username and password");
        };
        let (user, pass) = auth.split_once(':').unwrap_or((auth.as_str(), ""));
        if s.users.get(user).map(String::as_str) != Some(pass) {
            return error(500, "Invalid username or password");
        }
        s.logins += 1;
        let token = issue_token(s, user);
        return data(json!({"token": token, "expires": "2099-01-01 00:00:00"}));
    }

    let token = headers
        .get("phpipam-token")
        .or_else(|| headers.get("token"))
        .and_then(|v| v.to_str().ok());
    if !token.is_some_and(|t| s.tokens.contains_key(t)) {
        return error(401, "Unauthorized");
    }
    if matches!(method.as_str(), "POST" | "PATCH" | "PUT" | "DELETE")
        && s.read_only_apps.iter().any(|a| a == segs[1])
    {
        return error(401, "invalid permissions");
    }

    let id = rest.get(1).copied();
    let id2 = rest.get(2).copied();
    let id3 = rest.get(3).copied();
    if let Some(u) = s.unrelated
        && method != Method::GET
    {
        let num = |t: Option<&str>| t.and_then(|t| t.parse::<u64>().ok());
        let subnet_id = body
            .get("subnetId")
            .and_then(text)
            .and_then(|t| t.parse().ok());
        match (controller, id) {
            ("subnets", Some(sid)) if num(Some(sid)) == Some(u.subnet) => {
                if method == Method::DELETE {
                    s.unrelated = None;
                } else {
                    return error(501, "fake phpIPAM: the unrelated subnet is read-only");
                }
            }
            ("addresses", _)
                if num(id).and_then(|i| u.by_id(i)).is_some()
                    || (id == Some("first_free") && num(id2) == Some(u.subnet))
                    || subnet_id == Some(u.subnet) =>
            {
                return error(501, "fake phpIPAM: the unrelated addresses are read-only");
            }
            _ => {}
        }
    }
    match (controller, method.as_str(), id, id2) {
        ("addresses", "GET", Some("custom_fields"), None) => {
            if s.address_fields.is_empty() {
                return error(404, "No custom fields defined");
            }
            let defs: Map<String, Value> = s
                .address_fields
                .iter()
                .map(|f| (f.clone(), custom_field_json(f, "varchar(64)", Value::Null)))
                .collect();
            data(Value::Object(defs))
        }
        ("subnets", "GET", Some("custom_fields"), None) => {
            // `custom_vRA_Range` as recorded (fixture 43); the others as text fields.
            let mut defs = Map::new();
            defs.insert(
                "custom_vRA_Range".into(),
                custom_field_json("custom_vRA_Range", "tinyint(1)", json!("0")),
            );
            for f in &s.subnet_fields {
                defs.insert(f.clone(), custom_field_json(f, "varchar(255)", Value::Null));
            }
            data(Value::Object(defs))
        }
        ("sections", "GET", None, _) => {
            if s.sections.is_empty() {
                error(404, "No sections available")
            } else {
                data(Value::Array(
                    s.sections.iter().map(FakeState::section_json).collect(),
                ))
            }
        }
        ("sections", "GET", Some(sid), Some("subnets")) => {
            let sid: u64 = sid.parse().unwrap_or(0);
            let items: Vec<Value> = s
                .subnets
                .values()
                .filter(|sn| sn.section == sid)
                .map(|sn| s.subnet_json(sn, true))
                .collect();
            if items.is_empty() {
                error(404, "No subnets found")
            } else {
                data(Value::Array(items))
            }
        }
        // INFERRED, not recorded: `api/controllers/Vlans.php` `GET()` without an id lists every
        // VLAN through the same `prepare_result` as one VLAN (fixture 35's keys), or 404.
        ("vlan" | "vlans", "GET", None, _) => {
            if s.vlans.is_empty() {
                error(404, "No vlans configured")
            } else {
                data(Value::Array(s.vlans.values().map(vlan_json).collect()))
            }
        }
        ("vlan" | "vlans", "GET", Some(vid), None) => {
            match vid.parse().ok().and_then(|i: u64| s.vlans.get(&i)) {
                Some(v) => data(vlan_json(v)),
                None => error(404, "Vlan not found"),
            }
        }
        ("vlan" | "vlans", "GET", Some(_), _) => error(404, "Vlan not found"),
        ("subnets", "GET", Some(sid), Some("addresses")) => {
            let sid: u64 = sid.parse().unwrap_or(0);
            if !s.subnets.contains_key(&sid) {
                return error(404, &format!("Invalid subnet Id ({sid})"));
            }
            let mut items: Vec<Value> = s
                .addresses
                .values()
                .filter(|a| a.subnet == sid)
                .map(FakeState::address_json)
                .collect();
            if let Some(u) = s.unrelated.filter(|u| u.subnet == sid) {
                items.extend(u.matching(&uri));
            }
            filtered(&uri, items, "No addresses found")
        }
        ("subnets", "GET", Some(sid), None) => {
            match sid.parse().ok().and_then(|i| s.subnets.get(&i)) {
                Some(sn) => data(s.subnet_json(sn, true)),
                None => error(400, &format!("Invalid subnet Id ({sid})")),
            }
        }
        ("subnets", "POST", None, _) => create_subnet(s, &body, segs[1]),
        ("subnets", "POST", Some(parent), Some("first_subnet")) => {
            let Some(parent) = parent
                .parse::<u64>()
                .ok()
                .and_then(|p| s.subnets.get(&p).cloned())
            else {
                return error(404, "Invalid subnet Id");
            };
            let Some(mask) = id3.and_then(|m| m.parse::<u8>().ok()) else {
                return error(400, "Invalid mask");
            };
            if mask <= parent.cidr.prefix_len() {
                return error(404, "No subnets found");
            }
            let children: Vec<IpNet> = s
                .subnets
                .values()
                .filter(|c| c.master == parent.id)
                .map(|c| c.cidr)
                .collect();
            let Some(free) = parent.cidr.subnets(mask).ok().and_then(|mut it| {
                it.find(|c| !children.iter().any(|o| o.contains(c) || c.contains(o)))
            }) else {
                return error(404, "No subnets found");
            };
            let description = body
                .get("description")
                .and_then(text)
                .unwrap_or_else(|| "API autocreated".into());
            if description.len() > SUBNET_DESCRIPTION_BYTES {
                return too_long("description");
            }
            let new_id = s.next_subnet;
            s.next_subnet += 1;
            let mut child = subnet(new_id, &free.to_string(), &description);
            child.section = parent.section;
            child.master = parent.id;
            child.nameserver = body
                .get("nameserverId")
                .and_then(text)
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            s.subnets.insert(new_id, child);
            created(
                "Subnet created",
                new_id,
                format!("/api/{}/subnets/{new_id}/", segs[1]),
                Some(json!(free.to_string())),
            )
        }
        ("subnets", "DELETE", Some(sid), None) => {
            let Ok(sid) = sid.parse::<u64>() else {
                return error(400, "Subnet Id must be numeric");
            };
            if s.subnets.remove(&sid).is_none() {
                return error(404, &format!("Invalid subnet Id ({sid})"));
            }
            s.addresses.retain(|_, a| a.subnet != sid);
            answer(200, json!({"message": "Subnet deleted"}))
        }
        // INFERRED, not recorded: on an IPAM without any address `fetch_all_objects` answers
        // `false` (class.Common.php: an empty result is false), and `Addresses.php` `GET()`
        // throws 500 "Unable to read addresses" before any filter is looked at.
        ("addresses", "GET", None, _) if s.addresses.is_empty() && s.unrelated.is_none() => {
            error(500, "Unable to read addresses")
        }
        ("addresses", "GET", None, _) => {
            let mut items: Vec<Value> = s.addresses.values().map(FakeState::address_json).collect();
            if let Some(u) = s.unrelated {
                items.extend(u.matching(&uri));
            }
            filtered(&uri, items, "No addresses found")
        }
        ("addresses", "GET", Some("search"), Some(ip)) => {
            let Ok(ip) = ip.parse::<IpAddr>() else {
                return error(400, "Invalid address");
            };
            let items: Vec<Value> = s
                .addresses
                .values()
                .filter(|a| a.ip == ip)
                .cloned()
                .chain(s.unrelated.and_then(|u| u.by_ip(ip)))
                .map(|a| FakeState::address_json(&a))
                .collect();
            if items.is_empty() {
                error(404, "Address not found")
            } else {
                data(Value::Array(items))
            }
        }
        ("addresses", "GET", Some(aid), None) => {
            let found = aid.parse().ok().and_then(|i: u64| {
                s.addresses
                    .get(&i)
                    .cloned()
                    .or_else(|| s.unrelated?.by_id(i))
            });
            match found {
                Some(a) => data(FakeState::address_json(&a)),
                None => error(404, "Invalid Id"),
            }
        }
        ("addresses", "POST", first, sub) => {
            if let Some(k) = unknown_address_key(s, &body) {
                return error(400, &format!("Invalid request key {k}"));
            }
            let first_free = first == Some("first_free");
            let sid = if first_free {
                sub.map(str::to_owned)
                    .or_else(|| body.get("subnetId").and_then(text))
            } else {
                body.get("subnetId").and_then(text)
            };
            let Some(sid) = sid.and_then(|t| t.parse::<u64>().ok()) else {
                return error(400, "SubnetId must be numeric");
            };
            let Some(sn) = s.subnets.get(&sid).cloned() else {
                return if first_free {
                    error(400, "Invalid subnet identifier")
                } else {
                    error(404, "Invalid subnet Id")
                };
            };
            if first_free && s.subnets.values().any(|c| c.master == sid) {
                return error(409, "Subnet contains subnets");
            }
            let ip = if first_free {
                match s.first_free(&sn) {
                    Some(ip) => ip,
                    None => return error(404, "No free addresses found"),
                }
            } else {
                let given = body
                    .get("ip")
                    .or_else(|| body.get("ip_addr"))
                    .and_then(text)
                    .and_then(|t| t.parse::<IpAddr>().ok());
                let Some(ip) = given else {
                    return error(
                        500,
                        &format!("0.0.0.0 is not a valid address for subnet {}", sn.cidr),
                    );
                };
                if s.addresses.values().any(|a| a.subnet == sid && a.ip == ip) {
                    return error(409, "IP address already exists");
                }
                let (lo, hi) = FakeState::assignable(&sn);
                let v = to_u128(ip);
                if !sn.cidr.contains(&ip) || v < lo || v > hi {
                    return error(
                        500,
                        &format!("{ip} is not a valid address for subnet {}", sn.cidr),
                    );
                }
                ip
            };
            let id = s.next_address;
            let mut a = FakeAddress {
                id,
                subnet: sid,
                ip,
                is_gateway: false,
                description: first_free.then(|| "API created".to_owned()),
                hostname: None,
                mac: None,
                owner: None,
                vm_id: None,
                note: None,
            };
            if let Err(m) = apply(&mut a, &body) {
                return error(400, m);
            }
            // Fixtures 147–149: refused by the database after every API check, nothing inserted.
            if let Some(column) = address_too_long(&a) {
                return too_long(column);
            }
            s.next_address += 1;
            s.addresses.insert(id, a);
            let location = format!("/api/{}/addresses/{id}/", segs[1]);
            if first_free {
                created("Address created", id, location, Some(json!(ip.to_string())))
            } else {
                created("Address created", id, location, None)
            }
        }
        ("addresses", "PATCH" | "PUT", Some(aid), None) => {
            if body.contains_key("ip") || body.contains_key("ip_addr") {
                return error(400, "IP address cannot be changed");
            }
            if body.contains_key("subnetId") {
                return error(400, "Subnet cannot be changed");
            }
            // The id is looked up before the keys are validated (Addresses.php PATCH).
            if !aid.parse().is_ok_and(|i: u64| s.addresses.contains_key(&i)) {
                return error(404, "Address does not exist");
            }
            if let Some(k) = unknown_address_key(s, &body) {
                return error(400, &format!("Invalid request key {k}"));
            }
            let Some(a) = aid.parse().ok().and_then(|i: u64| s.addresses.get_mut(&i)) else {
                return error(404, "Address does not exist");
            };
            let mut copy = a.clone();
            if let Err(m) = apply(&mut copy, &body) {
                return error(400, m);
            }
            // Fixture 150: the record keeps its old values.
            if let Some(column) = address_too_long(&copy) {
                return too_long(column);
            }
            *a = copy;
            answer(200, json!({"message": "Address updated"}))
        }
        ("addresses", "DELETE", Some(aid), None) => {
            match aid.parse().ok().and_then(|i: u64| s.addresses.remove(&i)) {
                Some(_) => answer(200, json!({"message": "Address deleted"})),
                None => error(404, "Address does not exist"),
            }
        }
        ("sections" | "subnets" | "addresses" | "vlan", _, _, _) => {
            error(501, "Method not implemented")
        }
        _ => error(400, "Invalid controller"),
    }
}
