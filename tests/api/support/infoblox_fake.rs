//! A stateful fake Infoblox WAPI (NIOS 2.x) on 127.0.0.1: network views, networks and IPv6
//! networks, containers, host records, fixed addresses, A/AAAA/PTR records and extensible
//! attributes in memory, with the behaviours the gateway relies on:
//!
//! - **auth**: HTTP Basic or the `ibapauth` cookie it sets on every Basic-authenticated answer
//!   (value in the real format, `shared/contracts/infoblox-wapi.md` §1, W9); the 401/403 HTML
//!   pages of a real grid (§6, W4 TEST3–9); [`FakeWapi::expire_sessions`] forgets every cookie.
//! - **searches**: field filters, `*EA=value`, `field~=regex` (a literal-text subset: `\`
//!   escapes, `^`, `$`), `_return_fields` / `_return_fields+`, paging (`_paging=1`,
//!   `_max_results`, `_return_as_object=1`, `_page_id`, `next_page_id`; §3, W1/W7) with the
//!   error bodies of §3 (W7), non-searchable fields and unknown EAs refused as in §4 (W4).
//! - **extensible attribute definitions**: `GET extensibleattributedef[?name=…]` lists the
//!   defined EAs (`FakeWapiState::eas`) as `{"_ref", "name", "type": "STRING"}` — the object,
//!   its searchable fields (comment, name, namespace, type) and default return fields (comment,
//!   default_value, name, type) as W1 infoblox-client `objects.py` `EADefinition` has them; a
//!   search by an undefined name is `[]` (fixtures 31, 32). Every EA here is of type STRING
//!   (INFERRED: the fake keeps no types), and unset `comment` / `default_value` are left out.
//! - **creates**: `201` + the ref as a JSON string, or the object with `_return_fields` (§2);
//!   `func:nextavailableip:<cidr>[,<view>]` and `func:nextavailablenetwork:<cidr>,<view>,<len>`
//!   (§5.3, §5.4) decided under the same lock as everything else, so they are atomic as on a
//!   grid; `?_function=next_available_ip` / `next_available_network` probes (§5.2, §5.4).
//! - **next available IP, object-function form** (§5.3, W2 `objects.go` `IpNextAvailableInfo`
//!   / `NewIpNextAvailable`, used in `ipv4addrs[].ipv4addr`, `ipv6addrs[].ipv6addr` and the
//!   `ipv4addr` / `ipv6addr` of fixed addresses and A/AAAA records):
//!   `{"_object_function": "next_available_ip", "_result_field": "ips", "_object": "network" |
//!   "ipv6network", "_object_parameters": {<search>}, "_parameters": {"exclude": [...]}}`. The
//!   search takes searchable fields and `*EA` filters like any search (§4); `_object` follows
//!   the address family (W2 `NewIpNextAvailableInfo`: `ipv6network` for IPv6). `exclude` lists
//!   addresses the grid skips although nothing holds them (§5.2: W3 `nios_next_ip.py`, W11
//!   Granicus `range.rb` "which ones to exclude from consideration"); with nothing else left
//!   the answer is fixture 11's (`Cannot find 1 available IP address(es) in this network`).
//!   INFERRED (no source shows them): a search finding no network is a 400
//!   `Client.Ibap.Data.NotFound`, one finding several is a 400 `Client.Ibap.Proto`, and a
//!   wrong function, result field or object type is a 400 `Client.Ibap.Proto`.
//! - **routers are not protected**: next-available skips what objects hold (and `exclude`),
//!   nothing else. A network's `routers` DHCP option or a `Gateway` EA reserves nothing: a grid
//!   hands that address out unless a record holds it or the caller excludes it (the behaviour
//!   issue 11 reports from real grids; no source shows a grid skipping routers). Seeded
//!   networks get no reservation for their gateway unless the seed asks for one
//!   ([`FakeWapiState::add_reserved_network`]; the [`FakeWapiState::lab`] asks for them).
//! - **errors**: `{"Error", "code", "text"}` bodies (§6): `Cannot find 1 available IP
//!   address(es) in this network`, `The record '…' already exists.`, `Reference … not found`
//!   (404), `A parent was not found` (a DNS name outside every zone), `Unknown object type`.
//!
//! INFERRED (no source shows it; chosen to be strict): an address already held by another
//! object is refused (`… already exists.`), `ipv4address` entries of the network and broadcast
//! addresses are `USED` with types `NETWORK` / `BROADCAST`.
//!
//! INFERRED (WAPI object reference from memory, not in the contract): `network` objects have a
//! read-only `utilization` field, the percentage of the network's addresses in use; the fake
//! serves it when asked for (`_return_fields[+]=…,utilization`) as held addresses × 100 / usable
//! addresses (network and broadcast excluded), rounded down, always current (a grid refreshes
//! it periodically).
//!
//! `tests/api/infoblox_fake.rs` checks its answers against `fixtures/infoblox/`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ipnet::IpNet;
use serde_json::{Map, Value, json};

/// The 401 page of a real grid (W4 TEST3–6), byte for byte.
pub const HTML_401: &str = "<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head>\n<title>401 Authorization Required</title>\n</head><body>\n<h1>Authorization Required</h1>\n<p>This server could not verify that you\nare authorized to access the document\nrequested.  Either you supplied the wrong\ncredentials (e.g., bad password), or your\nbrowser doesn't understand how to supply\nthe credentials required.</p>\n</body></html>\n";

/// The 403 page after repeated bad passwords (W4 TEST7–9).
pub fn html_403(path: &str) -> String {
    format!(
        "<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head>\n<title>403 Forbidden</title>\n</head><body>\n<h1>Forbidden</h1>\n<p>You don't have permission to access {path}\non this server.</p>\n</body></html>\n"
    )
}

pub const NETWORK_TYPES: &[&str] = &[
    "network",
    "ipv6network",
    "networkcontainer",
    "ipv6networkcontainer",
];

/// One object: its type and its fields as WAPI shows them.
#[derive(Debug, Clone)]
pub struct FakeObject {
    pub id: u64,
    pub kind: String,
    pub fields: Map<String, Value>,
}

impl FakeObject {
    pub fn text(&self, field: &str) -> Option<&str> {
        self.fields.get(field).and_then(Value::as_str)
    }

    fn cidr(&self) -> Option<IpNet> {
        self.text("network")?.parse().ok()
    }

    fn network_view(&self) -> String {
        self.text("network_view").unwrap_or("default").to_owned()
    }

    pub fn ea(&self, name: &str) -> Option<String> {
        match self.fields.get("extattrs")?.get(name)?.get("value")? {
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }

    /// Every address this object holds (host addresses, fixed address, A/AAAA/PTR address).
    fn addresses(&self) -> Vec<IpAddr> {
        let mut out = Vec::new();
        for list in ["ipv4addrs", "ipv6addrs"] {
            for e in self
                .fields
                .get(list)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                for k in ["ipv4addr", "ipv6addr"] {
                    if let Some(a) = e
                        .get(k)
                        .and_then(Value::as_str)
                        .and_then(|s| s.parse().ok())
                    {
                        out.push(a);
                    }
                }
            }
        }
        for k in ["ipv4addr", "ipv6addr"] {
            if let Some(a) = self.text(k).and_then(|s| s.parse().ok()) {
                out.push(a);
            }
        }
        out
    }
}

#[derive(Debug, Default)]
pub struct FakeWapiState {
    pub users: HashMap<String, String>,
    /// Live `ibapauth` cookie values (with their quotes).
    pub sessions: HashSet<String>,
    pub network_views: Vec<String>,
    /// DNS view → the network view its A records live in.
    pub dns_views: BTreeMap<String, String>,
    /// Authoritative zones (names under them can be registered in DNS).
    pub zones: Vec<String>,
    /// Extensible attribute definitions.
    pub eas: HashSet<String>,
    pub objects: BTreeMap<u64, FakeObject>,
    next_id: u64,
    /// Successful Basic authentications (each opens a session).
    pub logins: usize,
    pub requests: usize,
    pub failed_logins: usize,
    /// After this many bad passwords, every request gets the 403 page.
    pub lockout_after: Option<usize>,
    /// Answer every request with 503 (grid busy).
    pub unavailable: bool,
    /// Paged searches asked for (each page counts).
    pub pages_served: usize,
}

pub struct FakeWapi {
    pub url: String,
    pub state: Arc<Mutex<FakeWapiState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeWapi {
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

fn dhcp_option(name: &str, num: u32, value: &str) -> Value {
    json!({"name": name, "num": num, "use_option": true, "value": value, "vendor_class": "DHCP"})
}

/// What to seed for one network.
#[derive(Debug, Clone, Default)]
pub struct SeedNetwork {
    pub view: String,
    pub cidr: String,
    pub comment: String,
    pub gateway: Option<String>,
    pub dns_servers: Vec<String>,
    pub domain: Option<String>,
    pub search_domains: Vec<String>,
    pub eas: Vec<(String, String)>,
}

impl FakeWapiState {
    /// Users `admin` / `infoblox` and `vra` / `vra-pass`, views `default` (network and DNS),
    /// extensible attributes `vRA-Enabled`, `ipamgw-owner`, `Site`, `Tier`, `VLAN`, `Gateway`,
    /// `Block`; nothing else.
    pub fn empty() -> Self {
        let mut s = FakeWapiState {
            next_id: 1,
            ..FakeWapiState::default()
        };
        s.users.insert("admin".into(), "infoblox".into());
        s.users.insert("vra".into(), "vra-pass".into());
        s.network_views.push("default".into());
        s.dns_views.insert("default".into(), "default".into());
        for ea in [
            "vRA-Enabled",
            "ipamgw-owner",
            "Site",
            "Tier",
            "VLAN",
            "Gateway",
            "Block",
        ] {
            s.eas.insert(ea.into());
        }
        s
    }

    /// The standard lab topology (`support::matrix` names it; the fixtures use it):
    /// view `default`: lab-servers 10.20.0.0/24 (gw .1, DNS .53/.54, lab.example.com), lab-dmz
    /// 10.30.0.0/26 (gw .1), lab-tiny 10.40.0.0/29 (gw .1), lab-servers-v6 2001:db8:20::/64 (gw
    /// ::1), all `vRA-Enabled=true`; lab-hidden 10.50.0.0/24 without it; container
    /// lab-on-demand 10.100.0.0/16 (`Block=on-demand`); view `prod`: prod-servers
    /// 172.16.10.0/24 (gw .1). This lab's gateways are held by reservations (fixed addresses,
    /// MAC 00:00:00:00:00:00), as an operator may make them (fixtures 21 and 30 show them), so
    /// next-available skips them even without `exclude`. Networks added with
    /// [`FakeWapiState::add_network`] have none.
    pub fn lab() -> Self {
        let mut s = Self::empty();
        s.add_network_view("prod");
        s.add_zone("lab.example.com");
        s.add_zone("dmz.example.com");
        s.add_zone("tiny.example.com");
        s.add_zone("prod.example.com");
        let on = |extra: &[(&str, &str)]| {
            let mut v: Vec<(String, String)> = vec![("vRA-Enabled".into(), "true".into())];
            v.extend(
                extra
                    .iter()
                    .map(|(k, x)| ((*k).to_owned(), (*x).to_owned())),
            );
            v
        };
        s.add_reserved_network(SeedNetwork {
            view: "default".into(),
            cidr: "10.20.0.0/24".into(),
            comment: "lab-servers".into(),
            gateway: Some("10.20.0.1".into()),
            dns_servers: vec!["10.20.0.53".into(), "10.20.0.54".into()],
            domain: Some("lab.example.com".into()),
            search_domains: vec!["lab.example.com".into(), "example.com".into()],
            eas: on(&[("Site", "lab"), ("Tier", "servers"), ("VLAN", "20")]),
        });
        s.add_reserved_network(SeedNetwork {
            view: "default".into(),
            cidr: "10.30.0.0/26".into(),
            comment: "lab-dmz".into(),
            gateway: Some("10.30.0.1".into()),
            dns_servers: vec!["10.20.0.53".into()],
            domain: Some("dmz.example.com".into()),
            eas: on(&[("Site", "lab"), ("Tier", "dmz"), ("VLAN", "30")]),
            ..SeedNetwork::default()
        });
        s.add_reserved_network(SeedNetwork {
            view: "default".into(),
            cidr: "10.40.0.0/29".into(),
            comment: "lab-tiny".into(),
            gateway: Some("10.40.0.1".into()),
            dns_servers: vec!["10.20.0.53".into()],
            domain: Some("tiny.example.com".into()),
            eas: on(&[]),
            ..SeedNetwork::default()
        });
        s.add_reserved_network(SeedNetwork {
            view: "default".into(),
            cidr: "2001:db8:20::/64".into(),
            comment: "lab-servers-v6".into(),
            gateway: Some("2001:db8:20::1".into()),
            dns_servers: vec!["2001:db8:20::53".into()],
            domain: Some("lab.example.com".into()),
            eas: on(&[("Site", "lab"), ("VLAN", "20")]),
            ..SeedNetwork::default()
        });
        s.add_reserved_network(SeedNetwork {
            view: "default".into(),
            cidr: "10.50.0.0/24".into(),
            comment: "lab-hidden".into(),
            gateway: Some("10.50.0.1".into()),
            ..SeedNetwork::default()
        });
        s.add_reserved_network(SeedNetwork {
            view: "prod".into(),
            cidr: "172.16.10.0/24".into(),
            comment: "prod-servers".into(),
            gateway: Some("172.16.10.1".into()),
            dns_servers: vec!["172.16.0.53".into()],
            domain: Some("prod.example.com".into()),
            eas: on(&[("Site", "prod")]),
            ..SeedNetwork::default()
        });
        s.add_container(SeedNetwork {
            view: "default".into(),
            cidr: "10.100.0.0/16".into(),
            comment: "lab-on-demand".into(),
            dns_servers: vec!["10.20.0.53".into()],
            domain: Some("lab.example.com".into()),
            eas: vec![("Block".into(), "on-demand".into())],
            ..SeedNetwork::default()
        });
        s
    }

    pub fn add_network_view(&mut self, name: &str) {
        if !self.network_views.iter().any(|v| v == name) {
            self.network_views.push(name.to_owned());
        }
    }

    pub fn add_zone(&mut self, zone: &str) {
        self.zones.push(zone.trim_end_matches('.').to_owned());
    }

    pub fn add_ea(&mut self, name: &str) {
        self.eas.insert(name.to_owned());
    }

    fn insert(&mut self, kind: &str, fields: Map<String, Value>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.objects.insert(
            id,
            FakeObject {
                id,
                kind: kind.to_owned(),
                fields,
            },
        );
        id
    }

    fn seed_fields(n: &SeedNetwork, v6: bool, container: bool) -> Map<String, Value> {
        let mut options = Vec::new();
        if let (Some(gw), false) = (&n.gateway, v6 || container) {
            options.push(dhcp_option("routers", 3, gw));
        }
        let mut fields = Map::new();
        if !n.dns_servers.is_empty() {
            if v6 && !container {
                fields.insert("domain_name_servers".into(), json!(n.dns_servers));
            } else {
                options.push(dhcp_option(
                    "domain-name-servers",
                    6,
                    &n.dns_servers.join(","),
                ));
            }
        }
        if let Some(d) = &n.domain {
            if v6 && !container {
                fields.insert("domain_name".into(), json!(d));
            } else {
                options.push(dhcp_option("domain-name", 15, d));
            }
        }
        if !n.search_domains.is_empty() {
            options.push(dhcp_option(
                "domain-search",
                119,
                &n.search_domains
                    .iter()
                    .map(|d| format!("\"{d}\""))
                    .collect::<Vec<_>>()
                    .join(","),
            ));
        }
        let mut eas: Map<String, Value> = n
            .eas
            .iter()
            .map(|(k, v)| (k.clone(), json!({"value": v})))
            .collect();
        if let (Some(gw), true) = (&n.gateway, v6 && !container) {
            eas.insert("Gateway".into(), json!({"value": gw}));
        }
        fields.insert("network".into(), json!(n.cidr));
        fields.insert("network_view".into(), json!(n.view));
        fields.insert("comment".into(), json!(n.comment));
        fields.insert("extattrs".into(), Value::Object(eas));
        fields.insert("options".into(), Value::Array(options));
        fields
    }

    /// A network (or IPv6 network) with its DHCP options and EAs; the gateway is the `routers`
    /// option (IPv6: the `Gateway` EA, DHCPv6 has no routers option) and nothing more: no
    /// record holds it, as on many real grids ([`FakeWapiState::reserve`] adds one).
    pub fn add_network(&mut self, n: SeedNetwork) -> u64 {
        let cidr: IpNet = n.cidr.parse().expect("seed cidr");
        let v6 = matches!(cidr, IpNet::V6(_));
        self.add_network_view(&n.view);
        let mut fields = Self::seed_fields(&n, v6, false);
        fields.insert(
            "network_container".into(),
            json!(self.parent_container(&n.view, &cidr)),
        );
        self.insert(if v6 { "ipv6network" } else { "network" }, fields)
    }

    /// [`FakeWapiState::add_network`] plus a reservation holding its gateway (as an operator
    /// may make one).
    pub fn add_reserved_network(&mut self, n: SeedNetwork) -> u64 {
        let gateway = n.gateway.clone();
        let view = n.view.clone();
        let id = self.add_network(n);
        if let Some(gw) = gateway {
            self.reserve(&view, &gw, "gateway");
        }
        id
    }

    pub fn add_container(&mut self, n: SeedNetwork) -> u64 {
        let cidr: IpNet = n.cidr.parse().expect("seed cidr");
        let v6 = matches!(cidr, IpNet::V6(_));
        self.add_network_view(&n.view);
        let mut fields = Self::seed_fields(&n, v6, true);
        fields.insert(
            "network_container".into(),
            json!(self.parent_container(&n.view, &cidr)),
        );
        self.insert(
            if v6 {
                "ipv6networkcontainer"
            } else {
                "networkcontainer"
            },
            fields,
        )
    }

    /// A reservation (fixed address with the zero MAC / DUID) holding `addr`.
    pub fn reserve(&mut self, view: &str, addr: &str, comment: &str) -> u64 {
        let ip: IpAddr = addr.parse().expect("seed address");
        let mut f = Map::new();
        f.insert("network_view".into(), json!(view));
        f.insert("comment".into(), json!(comment));
        f.insert("extattrs".into(), json!({}));
        if ip.is_ipv4() {
            f.insert("ipv4addr".into(), json!(addr));
            f.insert("mac".into(), json!("00:00:00:00:00:00"));
            self.insert("fixedaddress", f)
        } else {
            f.insert("ipv6addr".into(), json!(addr));
            f.insert("duid".into(), json!("00:00:00:00:00:00:00:00"));
            self.insert("ipv6fixedaddress", f)
        }
    }

    fn parent_container(&self, view: &str, cidr: &IpNet) -> String {
        self.objects
            .values()
            .filter(|o| o.kind.ends_with("networkcontainer") && o.network_view() == view)
            .filter_map(|o| o.cidr())
            .filter(|c| c.contains(cidr) && c != cidr)
            .max_by_key(IpNet::prefix_len)
            .map(|c| c.to_string())
            .unwrap_or_else(|| "/".to_owned())
    }

    pub fn of_kind(&self, kind: &str) -> Vec<&FakeObject> {
        self.objects.values().filter(|o| o.kind == kind).collect()
    }

    /// The network view an object's addresses live in.
    fn view_of(&self, o: &FakeObject) -> String {
        match o.kind.as_str() {
            "record:a" | "record:aaaa" | "record:ptr" => self
                .dns_views
                .get(o.text("view").unwrap_or("default"))
                .cloned()
                .unwrap_or_else(|| "default".into()),
            _ => o.network_view(),
        }
    }

    /// Objects holding `addr` in network view `view` (PTRs do not hold addresses).
    pub fn holders(&self, view: &str, addr: IpAddr) -> Vec<&FakeObject> {
        self.objects
            .values()
            .filter(|o| {
                !NETWORK_TYPES.contains(&o.kind.as_str())
                    && o.kind != "record:ptr"
                    && self.view_of(o) == view
                    && o.addresses().contains(&addr)
            })
            .collect()
    }

    fn network_in(&self, view: &str, cidr: &IpNet) -> Option<&FakeObject> {
        self.objects.values().find(|o| {
            (o.kind == "network" || o.kind == "ipv6network")
                && o.network_view() == view
                && o.cidr().as_ref() == Some(cidr)
        })
    }

    fn network_holding(&self, view: &str, addr: IpAddr) -> Option<IpNet> {
        self.objects
            .values()
            .filter(|o| {
                (o.kind == "network" || o.kind == "ipv6network") && o.network_view() == view
            })
            .filter_map(|o| o.cidr())
            .filter(|c| c.contains(&addr))
            .max_by_key(IpNet::prefix_len)
    }

    /// Next free addresses of a network, skipping its network address (and the IPv4 broadcast).
    fn next_ips(&self, view: &str, cidr: &IpNet, n: usize, exclude: &[IpAddr]) -> Vec<IpAddr> {
        let v6 = matches!(cidr, IpNet::V6(_));
        let lo = to_u128(cidr.network());
        let hi = to_u128(cidr.broadcast());
        let (first, last) = if v6 || cidr.prefix_len() >= 31 {
            (lo + u128::from(v6), hi)
        } else {
            (lo + 1, hi - 1)
        };
        let used: HashSet<IpAddr> = self
            .objects
            .values()
            .filter(|o| {
                !NETWORK_TYPES.contains(&o.kind.as_str())
                    && o.kind != "record:ptr"
                    && self.view_of(o) == view
            })
            .flat_map(FakeObject::addresses)
            .collect();
        let mut out = Vec::new();
        let mut c = first;
        while c <= last && out.len() < n && c - first < 1_000_000 {
            let a = from_u128(v6, c);
            if !used.contains(&a) && !exclude.contains(&a) {
                out.push(a);
            }
            c += 1;
        }
        out
    }

    fn next_networks(&self, view: &str, container: &IpNet, len: u8, n: usize) -> Vec<IpNet> {
        let taken: Vec<IpNet> = self
            .objects
            .values()
            .filter(|o| NETWORK_TYPES.contains(&o.kind.as_str()) && o.network_view() == view)
            .filter_map(|o| o.cidr())
            .filter(|c| c != container && container.contains(c))
            .collect();
        container
            .subnets(len)
            .map(|it| {
                it.filter(|c| !taken.iter().any(|t| t.contains(c) || c.contains(t)))
                    .take(n)
                    .collect()
            })
            .unwrap_or_default()
    }

    // ---- refs ------------------------------------------------------------------------------

    fn reference(&self, o: &FakeObject) -> String {
        let enc = |s: &str| s.replace(':', "%3A");
        let opaque = URL_SAFE_NO_PAD.encode(format!("dns.{}${}", o.kind, o.id));
        let tail = match o.kind.as_str() {
            k if NETWORK_TYPES.contains(&k) => format!(
                "{}/{}",
                enc(o.text("network").unwrap_or_default()),
                o.network_view()
            ),
            "fixedaddress" => format!(
                "{}/{}",
                o.text("ipv4addr").unwrap_or_default(),
                o.network_view()
            ),
            "ipv6fixedaddress" => format!(
                "{}/{}",
                enc(o.text("ipv6addr").unwrap_or_default()),
                o.network_view()
            ),
            "record:ptr" => format!(
                "{}/{}",
                o.text("name").unwrap_or_default(),
                o.text("view").unwrap_or("default")
            ),
            "networkview" | "view" => format!("{}/false", o.text("name").unwrap_or_default()),
            _ => format!(
                "{}/{}",
                o.text("name").unwrap_or_default(),
                o.text("view").unwrap_or("default")
            ),
        };
        format!("{}/{opaque}:{tail}", o.kind)
    }

    fn id_of(reference: &str) -> Option<u64> {
        let (_, rest) = reference.split_once('/')?;
        let opaque = rest.split(':').next()?;
        let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(opaque).ok()?).ok()?;
        raw.rsplit_once('$')?.1.parse().ok()
    }

    /// Held IPv4 addresses by network view, sorted (PTRs and network objects hold none): what
    /// `utilization` (of `network` objects: IPv4) is computed from, built once per search.
    fn held_by_view(&self) -> HashMap<String, Vec<u128>> {
        let mut out: HashMap<String, Vec<u128>> = HashMap::new();
        for o in self.objects.values() {
            if NETWORK_TYPES.contains(&o.kind.as_str()) || o.kind == "record:ptr" {
                continue;
            }
            let list = out.entry(self.view_of(o)).or_default();
            list.extend(
                o.addresses()
                    .into_iter()
                    .filter(IpAddr::is_ipv4)
                    .map(to_u128),
            );
        }
        for list in out.values_mut() {
            list.sort_unstable();
            list.dedup();
        }
        out
    }

    /// A network's utilization in percent (held usable addresses × 100 / usable addresses,
    /// rounded down); `None` for other objects.
    fn utilization(&self, o: &FakeObject, held: &HashMap<String, Vec<u128>>) -> Option<u64> {
        if o.kind != "network" {
            return None;
        }
        let cidr = o.cidr()?;
        let (lo, hi) = (to_u128(cidr.network()), to_u128(cidr.broadcast()));
        let (first, last) = if cidr.prefix_len() >= 31 {
            (lo, hi)
        } else {
            (lo + 1, hi - 1)
        };
        let list = held
            .get(&o.network_view())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let from = list.partition_point(|a| *a < first);
        let to = list.partition_point(|a| *a <= last);
        let used = (to - from) as u128;
        let size = last - first + 1;
        u64::try_from(used * 100 / size).ok()
    }

    /// An object as WAPI returns it: `_ref` plus the asked-for fields that are set.
    fn render(&self, o: &FakeObject, fields: &[String]) -> Value {
        let mut out = Map::new();
        out.insert("_ref".into(), json!(self.reference(o)));
        for f in fields {
            let v = match f.as_str() {
                "ipv4addrs" | "ipv6addrs" if o.fields.contains_key(f.as_str()) => {
                    let v4 = f == "ipv4addrs";
                    let name = o.text("name").unwrap_or_default().to_owned();
                    let view = o.text("view").unwrap_or("default").to_owned();
                    let list: Vec<Value> = o
                        .fields
                        .get(f)
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .map(|e| {
                            let mut m = e.as_object().cloned().unwrap_or_default();
                            let addr = m
                                .get(if v4 { "ipv4addr" } else { "ipv6addr" })
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_owned();
                            let kind = if v4 {
                                "record:host_ipv4addr"
                            } else {
                                "record:host_ipv6addr"
                            };
                            m.insert(
                                "_ref".into(),
                                json!(format!(
                                    "{kind}/{}:{}/{name}/{view}",
                                    URL_SAFE_NO_PAD.encode(format!("{kind}${}${addr}", o.id)),
                                    addr.replace(':', "%3A")
                                )),
                            );
                            m.insert("host".into(), json!(name));
                            m.entry("configure_for_dhcp").or_insert(json!(false));
                            Value::Object(m)
                        })
                        .collect();
                    Some(Value::Array(list))
                }
                other => o.fields.get(other).cloned(),
            };
            if let Some(v) = v {
                out.insert(f.clone(), v);
            }
        }
        Value::Object(out)
    }
}

// ---- answers -----------------------------------------------------------------------------

/// A refusal, boxed (responses are large).
type Refused = Box<Response>;

fn json_answer(status: u16, body: &Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// `{"Error": "<kind>: <detail>", "code": …, "text": …}`.
pub fn wapi_error(status: u16, kind: &str, code: &str, text: &str) -> Response {
    json_answer(
        status,
        &json!({"Error": format!("{kind}: {text}"), "code": code, "text": text}),
    )
}

/// A data conflict, worded as NIOS does: `AdmConDataError: None (IBDataConflictError:
/// IB.Data.Conflict:<text>)` (W4 TEST2).
pub fn conflict(text: &str) -> Response {
    json_answer(
        400,
        &json!({
            "Error": format!("AdmConDataError: None (IBDataConflictError: IB.Data.Conflict:{text})"),
            "code": "Client.Ibap.Data.Conflict",
            "text": text,
        }),
    )
}

fn proto(text: &str) -> Response {
    wapi_error(400, "AdmConProtoError", "Client.Ibap.Proto", text)
}

fn not_found(status: u16, text: &str) -> Response {
    wapi_error(
        status,
        "AdmConDataNotFoundError",
        "Client.Ibap.Data.NotFound",
        text,
    )
}

fn html(status: u16, body: String) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::UNAUTHORIZED),
        [(header::CONTENT_TYPE, "text/html; charset=iso-8859-1")],
        body,
    )
        .into_response()
}

fn searchable(kind: &str, field: &str) -> bool {
    let list: &[&str] = match kind {
        "network" => &[
            "comment",
            "ipv4addr",
            "network",
            "network_container",
            "network_view",
        ],
        "ipv6network" | "networkcontainer" | "ipv6networkcontainer" => {
            &["comment", "network", "network_container", "network_view"]
        }
        "record:host" => &[
            "comment",
            "name",
            "network_view",
            "view",
            "zone",
            "mac",
            "ipv4addr",
            "ipv6addr",
        ],
        "fixedaddress" => &["comment", "ipv4addr", "mac", "network", "network_view"],
        "ipv6fixedaddress" => &["comment", "ipv6addr", "duid", "network", "network_view"],
        "record:a" => &["comment", "name", "view", "zone", "ipv4addr"],
        "record:aaaa" => &["comment", "name", "view", "zone", "ipv6addr"],
        "record:ptr" => &[
            "comment", "name", "view", "zone", "ptrdname", "ipv4addr", "ipv6addr",
        ],
        "ipv4address" | "ipv6address" => &[
            "comment",
            "ip_address",
            "mac_address",
            "names",
            "network",
            "network_view",
            "status",
            "types",
        ],
        "networkview" | "view" => &["name", "comment", "is_default"],
        // W1 infoblox-client objects.py EADefinition._all_searchable_fields.
        "extensibleattributedef" => &["comment", "name", "namespace", "type"],
        _ => &[],
    };
    list.contains(&field)
}

fn default_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        k if NETWORK_TYPES.contains(&k) => &["comment", "extattrs", "network", "network_view"],
        "record:host" => &["extattrs", "ipv4addrs", "ipv6addrs", "name", "view"],
        "fixedaddress" => &["extattrs", "ipv4addr", "network_view", "mac"],
        "ipv6fixedaddress" => &["extattrs", "ipv6addr", "network_view", "duid"],
        "record:a" => &["ipv4addr", "name", "view"],
        "record:aaaa" => &["ipv6addr", "name", "view"],
        "record:ptr" => &["ptrdname", "view", "ipv4addr", "ipv6addr"],
        "ipv4address" | "ipv6address" => &[
            "ip_address",
            "network",
            "network_view",
            "objects",
            "status",
            "types",
            "names",
        ],
        "networkview" | "view" => &["name", "is_default"],
        // W1 infoblox-client objects.py EADefinition._return_fields.
        "extensibleattributedef" => &["comment", "default_value", "name", "type"],
        _ => &[],
    }
}

const KNOWN: &[&str] = &[
    "network",
    "ipv6network",
    "networkcontainer",
    "ipv6networkcontainer",
    "networkview",
    "view",
    "record:host",
    "fixedaddress",
    "ipv6fixedaddress",
    "record:a",
    "record:aaaa",
    "record:ptr",
    "ipv4address",
    "ipv6address",
    "extensibleattributedef",
];

/// A literal-text subset of POSIX regexes: `\x` escapes, optional `^` and `$`.
fn regex_matches(pattern: &str, text: &str) -> bool {
    let (anchored_start, p) = match pattern.strip_prefix('^') {
        Some(rest) => (true, rest),
        None => (false, pattern),
    };
    let (anchored_end, p) = match p.strip_suffix('$') {
        Some(rest) if !rest.ends_with('\\') => (true, rest),
        _ => (false, p),
    };
    let mut lit = String::new();
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                lit.push(n);
            }
        } else {
            lit.push(c);
        }
    }
    match (anchored_start, anchored_end) {
        (true, true) => text == lit,
        (true, false) => text.starts_with(&lit),
        (false, true) => text.ends_with(&lit),
        (false, false) => text.contains(&lit),
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

struct Query {
    filters: Vec<(String, String)>,
    params: HashMap<String, String>,
}

fn parse_query(uri: &Uri) -> Query {
    let mut filters = Vec::new();
    let mut params = HashMap::new();
    for (k, v) in uri
        .query()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
    {
        if k.starts_with('_') {
            params.insert(k, v);
        } else {
            filters.push((k, v));
        }
    }
    Query { filters, params }
}

fn wanted_fields(kind: &str, params: &HashMap<String, String>) -> Vec<String> {
    let split = |s: &str| -> Vec<String> {
        s.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect()
    };
    if let Some(f) = params.get("_return_fields") {
        return split(f);
    }
    let mut out: Vec<String> = default_fields(kind)
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    if let Some(f) = params.get("_return_fields+") {
        for x in split(f) {
            if !out.contains(&x) {
                out.push(x);
            }
        }
    }
    out
}

impl FakeWapi {
    pub async fn start() -> Self {
        Self::start_with(FakeWapiState::lab()).await
    }

    pub async fn start_with(state: FakeWapiState) -> Self {
        let state = Arc::new(Mutex::new(state));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake WAPI");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeWapi { url, state, task }
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut FakeWapiState) -> T) -> T {
        f(&mut self.state.lock().expect("fake state"))
    }

    /// Forgets every session cookie (as the grid does when they time out).
    pub fn expire_sessions(&self) {
        self.with(|s| s.sessions.clear());
    }

    pub fn logins(&self) -> usize {
        self.with(|s| s.logins)
    }

    /// Addresses held in network `cidr` of `view` (reservations included).
    pub fn used_in(&self, view: &str, cidr: &str) -> Vec<IpAddr> {
        let cidr: IpNet = cidr.parse().expect("cidr");
        self.with(|s| {
            let mut out: Vec<IpAddr> = s
                .objects
                .values()
                .filter(|o| {
                    !NETWORK_TYPES.contains(&o.kind.as_str())
                        && o.kind != "record:ptr"
                        && s.view_of(o) == view
                })
                .flat_map(FakeObject::addresses)
                .filter(|a| cidr.contains(a))
                .collect();
            out.sort();
            out
        })
    }

    /// Objects of a type, as field maps.
    pub fn objects(&self, kind: &str) -> Vec<FakeObject> {
        self.with(|s| s.of_kind(kind).into_iter().cloned().collect())
    }
}

/// Handles one request under the state lock (so every create is atomic).
async fn handle(
    State(state): State<Arc<Mutex<FakeWapiState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = state.lock().expect("fake state");
    s.requests += 1;
    let path = uri.path().to_owned();
    let Some(rest) = path.strip_prefix("/wapi/v") else {
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    };
    let (version, target) = rest.split_once('/').unwrap_or((rest, ""));
    if !version.starts_with("2.") {
        return (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "text/plain")],
            format!("Version {version} not supported"),
        )
            .into_response();
    }
    if s.unavailable {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain")],
            "Temporary Unavailable",
        )
            .into_response();
    }
    if let Some(n) = s.lockout_after
        && s.failed_logins >= n
    {
        return html(403, html_403(&path));
    }

    // Authentication: a live cookie, else Basic (which opens a session).
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| {
            v.split(';')
                .map(str::trim)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .find_map(|c| c.strip_prefix("ibapauth=").map(str::to_owned));
    let mut set_cookie = None;
    let authed = match cookie {
        Some(c) if s.sessions.contains(&c) => true,
        _ => {
            let basic = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Basic "))
                .and_then(|b| STANDARD.decode(b).ok())
                .and_then(|b| String::from_utf8(b).ok());
            match basic {
                Some(pair) => {
                    let (user, pass) = pair.split_once(':').unwrap_or((pair.as_str(), ""));
                    if s.users.get(user).map(String::as_str) == Some(pass) {
                        s.logins += 1;
                        let ctime = 1_731_651_582 + s.logins;
                        let value = format!(
                            "\"ip=127.0.0.1,client=API,group=admin-group,ctime={ctime},timeout=600,mtime={ctime},su=1,auth=LOCAL,user={user},xOdj0yvvEvBpRXesDLHIirxYXyER0m6C{:04}\"",
                            s.logins
                        );
                        s.sessions.insert(value.clone());
                        set_cookie = Some(format!("ibapauth={value}; httponly; Path=/"));
                        true
                    } else {
                        s.failed_logins += 1;
                        false
                    }
                }
                None => false,
            }
        }
    };
    if !authed {
        return html(401, HTML_401.to_owned());
    }

    let body: Option<Value> = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => Some(v),
            Err(_) => return proto("Invalid JSON in request body"),
        }
    };
    let q = parse_query(&uri);
    let mut resp = route(&mut s, &method, target, &q, body);
    if let Some(c) = set_cookie
        && let Ok(v) = header::HeaderValue::from_str(&c)
    {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

fn route(
    s: &mut FakeWapiState,
    method: &Method,
    target: &str,
    q: &Query,
    body: Option<Value>,
) -> Response {
    let target = target.trim_end_matches('/');
    if target.is_empty() {
        return if q.params.contains_key("_schema") {
            json_answer(
                200,
                &json!({
                    "requested_version": "2.12",
                    "supported_objects": KNOWN,
                    "supported_versions": ["2.10", "2.11", "2.12", "2.12.3", "2.13.7"],
                }),
            )
        } else {
            proto("Unknown object type ()")
        };
    }
    let decoded = target.replace("%3A", ":").replace("%3a", ":");
    if decoded.contains('/') {
        // A ref.
        let kind = decoded.split('/').next().unwrap_or_default().to_owned();
        let Some(id) = FakeWapiState::id_of(&decoded)
            .filter(|id| s.objects.get(id).is_some_and(|o| o.kind == kind))
        else {
            return not_found(404, &format!("Reference {decoded} not found"));
        };
        if let Some(func) = q.params.get("_function") {
            return call_function(s, id, func, body.unwrap_or(json!({})));
        }
        return match method.as_str() {
            "GET" => {
                let o = &s.objects[&id];
                json_answer(200, &s.render(o, &wanted_fields(&kind, &q.params)))
            }
            "PUT" => update(s, id, &q.params, body.unwrap_or(json!({}))),
            "DELETE" => {
                let reference = s.reference(&s.objects[&id]);
                delete(s, id);
                json_answer(200, &json!(reference))
            }
            _ => proto("Unsupported method"),
        };
    }
    let kind = decoded.as_str();
    if !KNOWN.contains(&kind) {
        return proto(&format!("Unknown object type ({kind})"));
    }
    match method.as_str() {
        "GET" => search(s, kind, q),
        "POST" => create(s, kind, &q.params, body.unwrap_or(json!({}))),
        _ => proto("Unsupported method"),
    }
}

fn check_eas(s: &FakeWapiState, eas: Option<&Value>) -> Result<(), Refused> {
    if let Some(Value::Object(m)) = eas {
        for k in m.keys() {
            if !s.eas.contains(k) {
                return Err(Box::new(proto(&format!(
                    "Unknown extensible attribute: {k}"
                ))));
            }
        }
    }
    Ok(())
}

fn search(s: &mut FakeWapiState, kind: &str, q: &Query) -> Response {
    for (k, _) in &q.filters {
        if let Some(ea) = k.strip_prefix('*') {
            let name = ea.trim_end_matches(['~', ':', '!', '<', '>']);
            if !s.eas.contains(name) {
                return proto(&format!("Unknown extensible attribute: {name}"));
            }
        } else {
            let field = k.trim_end_matches(['~', ':', '!', '<', '>']);
            if !searchable(kind, field) {
                return proto(&format!("Field is not searchable: {field}"));
            }
        }
    }
    let fields = wanted_fields(kind, &q.params);
    let paging = q.params.get("_paging").map(String::as_str) == Some("1");
    let as_object = q.params.get("_return_as_object").map(String::as_str) == Some("1");
    if paging && as_object {
        s.pages_served += 1;
    }
    let s: &FakeWapiState = s;
    let found = if kind == "ipv4address" || kind == "ipv6address" {
        match address_entries(s, kind, q) {
            Ok(v) => Found::Values(v),
            Err(r) => return *r,
        }
    } else if kind == "networkview" {
        Found::Values(
            s.network_views
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    json!({"_ref": format!("networkview/{}:{v}/{}", URL_SAFE_NO_PAD.encode(format!("dns.network_view${i}")), i == 0), "name": v, "is_default": i == 0})
                })
                .filter(|v| {
                    q.filters
                        .iter()
                        .all(|(k, want)| k != "name" || v["name"] == json!(want))
                })
                .map(|mut v| {
                    if let Value::Object(m) = &mut v {
                        m.retain(|k, _| k == "_ref" || fields.contains(k));
                    }
                    v
                })
                .collect(),
        )
    } else if kind == "extensibleattributedef" {
        // The defined EAs (fixtures 31, 32): all STRING here; unset fields left out.
        let mut names: Vec<&String> = s.eas.iter().collect();
        names.sort();
        Found::Values(
            names
                .into_iter()
                .map(|n| {
                    json!({
                        // Opaque part as the fake's other refs; the name after the colon.
                        "_ref": format!("extensibleattributedef/{}:{n}",
                            URL_SAFE_NO_PAD.encode(format!("dns.extensibleattributedef${n}"))),
                        "name": n,
                        "type": "STRING",
                    })
                })
                .filter(|v| {
                    q.filters.iter().all(|(k, want)| match k.as_str() {
                        "name" | "type" => v[k.as_str()] == json!(want),
                        _ => false,
                    })
                })
                .map(|mut v| {
                    if let Value::Object(m) = &mut v {
                        m.retain(|k, _| k == "_ref" || fields.contains(k));
                    }
                    v
                })
                .collect(),
        )
    } else {
        Found::Objects(
            s.objects
                .values()
                .filter(|o| o.kind == kind)
                .filter(|o| {
                    q.filters.iter().all(|(k, want)| {
                        if let Some(ea) = k.strip_prefix('*') {
                            return o.ea(ea).as_deref() == Some(want.as_str());
                        }
                        if let Some(field) = k.strip_suffix('~') {
                            return o
                                .fields
                                .get(field)
                                .and_then(scalar_text)
                                .is_some_and(|t| regex_matches(want, &t));
                        }
                        match k.as_str() {
                            "ipv4addr" | "ipv6addr" => {
                                let want: Option<IpAddr> = want.parse().ok();
                                want.is_some_and(|w| o.addresses().contains(&w))
                            }
                            "network_view" if !o.fields.contains_key("network_view") => {
                                want == "default"
                            }
                            "view" if !o.fields.contains_key("view") => want == "default",
                            field => {
                                o.fields.get(field).and_then(scalar_text).as_deref()
                                    == Some(want.as_str())
                            }
                        }
                    })
                })
                .collect(),
        )
    };
    // Only what the answer shows is rendered: a page of a search over thousands of networks
    // renders its thousand, not all of them (the benchmark runs this fake in the gateway's
    // process, where rendering every object for every page churned the heap the gateway uses).
    let held = (matches!(found, Found::Objects(_)) && fields.iter().any(|f| f == "utilization"))
        .then(|| s.held_by_view());
    let render = |start: usize, n: usize| -> Vec<Value> {
        match &found {
            Found::Values(v) => v.iter().skip(start).take(n).cloned().collect(),
            Found::Objects(os) => os
                .iter()
                .skip(start)
                .take(n)
                .map(|o| {
                    let mut v = s.render(o, &fields);
                    if let Some(u) = held.as_ref().and_then(|h| s.utilization(o, h)) {
                        v["utilization"] = json!(u);
                    }
                    v
                })
                .collect(),
        }
    };
    let total = match &found {
        Found::Values(v) => v.len(),
        Found::Objects(os) => os.len(),
    };
    if paging {
        if !as_object {
            return proto("_return_as_object needs to be enabled for paging requests.");
        }
        let size: usize = q
            .params
            .get("_max_results")
            .and_then(|m| m.trim_start_matches('-').parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or(1000);
        let start = match q.params.get("_page_id") {
            Some(p) => match p
                .strip_prefix("789c")
                .and_then(|h| usize::from_str_radix(h, 16).ok())
            {
                Some(n) => n,
                None => return proto(&format!("Invalid page id: {p}")),
            },
            None => 0,
        };
        let mut out = json!({"result": render(start, size)});
        if start + size < total {
            out["next_page_id"] = json!(format!("789c{:x}", start + size));
        }
        return json_answer(200, &out);
    }
    let max: i64 = q
        .params
        .get("_max_results")
        .and_then(|m| m.parse().ok())
        .unwrap_or(-1000);
    let limit = max.unsigned_abs() as usize;
    if total > limit && max < 0 {
        return proto(&format!("Result set too large (> {limit})"));
    }
    let all = render(0, limit);
    if as_object {
        json_answer(200, &json!({"result": all}))
    } else {
        json_answer(200, &Value::Array(all))
    }
}

/// What a search found: answers already built (addresses, views), or objects to render.
enum Found<'a> {
    Values(Vec<Value>),
    Objects(Vec<&'a FakeObject>),
}

/// `ipv4address` / `ipv6address` entries for `ip_address=` or `network=` searches.
fn address_entries(s: &FakeWapiState, kind: &str, q: &Query) -> Result<Vec<Value>, Refused> {
    let get = |k: &str| {
        q.filters
            .iter()
            .find(|(f, _)| f == k)
            .map(|(_, v)| v.clone())
    };
    let view = get("network_view").unwrap_or_else(|| "default".into());
    let status = get("status");
    let v6 = kind == "ipv6address";
    let mut addrs: Vec<IpAddr> = Vec::new();
    if let Some(ip) = get("ip_address") {
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| Box::new(proto(&format!("Invalid value for ip_address: {ip}"))))?;
        addrs.push(ip);
    } else if let Some(net) = get("network") {
        let cidr: IpNet = net
            .parse()
            .map_err(|_| Box::new(proto(&format!("Invalid value for network: {net}"))))?;
        let mut used: Vec<IpAddr> = s
            .objects
            .values()
            .filter(|o| !NETWORK_TYPES.contains(&o.kind.as_str()) && s.view_of(o) == view)
            .flat_map(FakeObject::addresses)
            .filter(|a| cidr.contains(a))
            .collect();
        used.push(cidr.network());
        if !v6 {
            used.push(cidr.broadcast());
        }
        used.sort();
        used.dedup();
        addrs = used;
    } else {
        return Err(Box::new(proto(
            "An ip_address or network search is required",
        )));
    }
    let mut out = Vec::new();
    for a in addrs {
        if a.is_ipv6() != v6 {
            continue;
        }
        let Some(network) = s.network_holding(&view, a) else {
            continue;
        };
        let holders: Vec<&FakeObject> = s
            .objects
            .values()
            .filter(|o| {
                !NETWORK_TYPES.contains(&o.kind.as_str())
                    && s.view_of(o) == view
                    && o.addresses().contains(&a)
            })
            .collect();
        let mut types: Vec<String> = holders
            .iter()
            .map(|o| {
                match o.kind.as_str() {
                    "record:host" => "HOST",
                    "fixedaddress" | "ipv6fixedaddress"
                        if o.text("mac") == Some("00:00:00:00:00:00")
                            || o.text("duid") == Some("00:00:00:00:00:00:00:00") =>
                    {
                        "RESERVATION"
                    }
                    "fixedaddress" | "ipv6fixedaddress" => "FIXEDADDRESS",
                    "record:a" => "A",
                    "record:aaaa" => "AAAA",
                    "record:ptr" => "PTR",
                    _ => "UNKNOWN",
                }
                .to_owned()
            })
            .collect();
        if a == network.network() {
            types.push("NETWORK".into());
        } else if !v6 && a == network.broadcast() {
            types.push("BROADCAST".into());
        }
        let st = if types.is_empty() { "UNUSED" } else { "USED" };
        if status.as_deref().is_some_and(|w| w != st) {
            continue;
        }
        let names: Vec<String> = holders
            .iter()
            .filter_map(|o| o.text("name").or(o.text("ptrdname")).map(str::to_owned))
            .collect();
        let objects: Vec<String> = holders.iter().map(|o| s.reference(o)).collect();
        let opaque = URL_SAFE_NO_PAD.encode(format!(".ipv4_address${a}/0"));
        let mut e = json!({
            "_ref": format!("{kind}/{opaque}:{}/{view}", a.to_string().replace(':', "%3A")),
            "ip_address": a.to_string(),
            "network": network.to_string(),
            "network_view": view,
            "status": st,
            "types": types,
            "names": names,
            "objects": objects,
        });
        let fields = wanted_fields(kind, &q.params);
        if let Value::Object(m) = &mut e {
            m.retain(|k, _| k == "_ref" || fields.contains(k));
        }
        out.push(e);
    }
    Ok(out)
}

/// The object-function form of `next_available_ip` for the address field `key` (`ipv4addr` /
/// `ipv6addr`); the rules and their sources are in the module documentation.
fn next_available_object(
    s: &FakeWapiState,
    f: &Map<String, Value>,
    key: &str,
) -> Result<IpAddr, Refused> {
    let text = |k: &str| f.get(k).and_then(Value::as_str).unwrap_or_default();
    let function = text("_object_function");
    if function != "next_available_ip" {
        return Err(Box::new(proto(&format!(
            "Function {function} is not valid for this object"
        ))));
    }
    if text("_result_field") != "ips" {
        return Err(Box::new(proto(&format!(
            "Invalid result field {} for function next_available_ip",
            text("_result_field")
        ))));
    }
    let object = text("_object");
    let want = if key == "ipv6addr" {
        "ipv6network"
    } else {
        "network"
    };
    if object != want {
        return Err(Box::new(proto(&format!(
            "Object type {object} is not valid for {key}"
        ))));
    }
    let Some(Value::Object(params)) = f.get("_object_parameters") else {
        return Err(Box::new(proto(
            "_object_parameters is required with _object",
        )));
    };
    for k in params.keys() {
        if let Some(ea) = k.strip_prefix('*') {
            if !s.eas.contains(ea) {
                return Err(Box::new(proto(&format!(
                    "Unknown extensible attribute: {ea}"
                ))));
            }
        } else if !searchable(object, k) {
            return Err(Box::new(proto(&format!("Field is not searchable: {k}"))));
        }
    }
    let found: Vec<&FakeObject> = s
        .objects
        .values()
        .filter(|o| o.kind == object)
        .filter(|o| {
            params.iter().all(|(k, want)| {
                let want = scalar_text(want);
                match k.strip_prefix('*') {
                    Some(ea) => o.ea(ea) == want,
                    None if k == "network_view" => Some(o.network_view()) == want,
                    None => o.fields.get(k).and_then(scalar_text) == want,
                }
            })
        })
        .collect();
    let net = match found.as_slice() {
        [one] => *one,
        [] => {
            return Err(Box::new(not_found(
                400,
                &format!(
                    "No {object} object found for the search {}",
                    Value::Object(params.clone())
                ),
            )));
        }
        _ => {
            return Err(Box::new(proto(&format!(
                "The search {} found more than one {object} object",
                Value::Object(params.clone())
            ))));
        }
    };
    let mut exclude: Vec<IpAddr> = Vec::new();
    for v in f
        .get("_parameters")
        .and_then(|p| p.get("exclude"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match v.as_str().and_then(|t| t.parse().ok()) {
            Some(a) => exclude.push(a),
            None => return Err(Box::new(proto(&format!("Invalid value for exclude: {v}")))),
        }
    }
    let cidr = net
        .cidr()
        .ok_or_else(|| Box::new(proto("The network has no address")))?;
    s.next_ips(&net.network_view(), &cidr, 1, &exclude)
        .into_iter()
        .next()
        .ok_or_else(|| {
            Box::new(conflict(
                "Cannot find 1 available IP address(es) in this network",
            ))
        })
}

/// Resolves the address `value` of field `key` (`ipv4addr` / `ipv6addr`) for `view`: the
/// object-function form, `func:nextavailableip:<cidr>[,<view>]`, or a literal.
fn resolve_ip(
    s: &FakeWapiState,
    value: &Value,
    default_view: &str,
    key: &str,
) -> Result<IpAddr, Refused> {
    if let Value::Object(f) = value {
        return next_available_object(s, f, key);
    }
    let text = value.as_str().unwrap_or_default();
    if let Some(args) = text.strip_prefix("func:nextavailableip:") {
        let (net, view) = match args.split_once(',') {
            Some((n, v)) => (n.trim(), v.trim()),
            None => (args.trim(), default_view),
        };
        let cidr: IpNet = net
            .parse()
            .map_err(|_| Box::new(proto(&format!("Invalid network in function call: {net}"))))?;
        if s.network_in(view, &cidr.trunc()).is_none() {
            return Err(Box::new(not_found(
                400,
                &format!("Cannot find network {cidr} in network view {view}"),
            )));
        }
        return s
            .next_ips(view, &cidr.trunc(), 1, &[])
            .into_iter()
            .next()
            .ok_or_else(|| {
                Box::new(conflict(
                    "Cannot find 1 available IP address(es) in this network",
                ))
            });
    }
    let ip: IpAddr = text
        .parse()
        .map_err(|_| Box::new(proto(&format!("Invalid value for an IP address: {text}"))))?;
    if !s.holders(default_view, ip).is_empty() {
        return Err(Box::new(conflict(&format!(
            "The IP address {ip} already exists."
        ))));
    }
    Ok(ip)
}

/// A DNS name must sit under an authoritative zone.
fn check_zone(s: &FakeWapiState, name: &str) -> Result<(), Refused> {
    let n = name.trim_end_matches('.');
    if s.zones
        .iter()
        .any(|z| n.len() > z.len() && n.ends_with(&format!(".{z}")))
    {
        Ok(())
    } else {
        Err(Box::new(conflict(
            "The action is not allowed. A parent was not found.",
        )))
    }
}

fn created(s: &FakeWapiState, id: u64, params: &HashMap<String, String>) -> Response {
    let o = &s.objects[&id];
    if params.contains_key("_return_fields") || params.contains_key("_return_fields+") {
        json_answer(201, &s.render(o, &wanted_fields(&o.kind, params)))
    } else {
        json_answer(201, &json!(s.reference(o)))
    }
}

fn create(
    s: &mut FakeWapiState,
    kind: &str,
    params: &HashMap<String, String>,
    body: Value,
) -> Response {
    let Value::Object(mut f) = body else {
        return proto("The request body must be a JSON object");
    };
    if let Err(r) = check_eas(s, f.get("extattrs")) {
        return *r;
    }
    f.entry("extattrs").or_insert(json!({}));
    match kind {
        k if NETWORK_TYPES.contains(&k) => {
            let view = f
                .get("network_view")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_owned();
            if !s.network_views.contains(&view) {
                return not_found(400, &format!("Network view {view} not found"));
            }
            let spec = f.get("network").and_then(Value::as_str).unwrap_or_default();
            let cidr: IpNet = if let Some(args) = spec.strip_prefix("func:nextavailablenetwork:") {
                let parts: Vec<&str> = args.split(',').map(str::trim).collect();
                let (Some(parent), Some(pview), Some(len)) = (
                    parts.first().and_then(|p| p.parse::<IpNet>().ok()),
                    parts.get(1),
                    parts.get(2).and_then(|l| l.parse::<u8>().ok()),
                ) else {
                    return proto(&format!("Invalid function call: {spec}"));
                };
                let exists = s.objects.values().any(|o| {
                    o.kind.ends_with("networkcontainer")
                        && o.network_view() == *pview
                        && o.cidr() == Some(parent)
                });
                if !exists {
                    return not_found(
                        400,
                        &format!("Cannot find network container {parent} in network view {pview}"),
                    );
                }
                match s.next_networks(pview, &parent, len, 1).into_iter().next() {
                    Some(c) => c,
                    None => {
                        return conflict("Cannot find 1 available network(s) in this container");
                    }
                }
            } else {
                match spec.parse::<IpNet>() {
                    Ok(c) if c == c.trunc() => c,
                    _ => return proto(&format!("Invalid value for network: {spec}")),
                }
            };
            let v6_kind = kind.starts_with("ipv6");
            if matches!(cidr, IpNet::V6(_)) != v6_kind {
                return proto(&format!("Invalid value for network: {cidr}"));
            }
            if s.objects.values().any(|o| {
                NETWORK_TYPES.contains(&o.kind.as_str())
                    && o.network_view() == view
                    && o.cidr() == Some(cidr)
            }) {
                return conflict("The network already exists.");
            }
            f.insert("network".into(), json!(cidr.to_string()));
            f.insert("network_view".into(), json!(view));
            f.entry("comment").or_insert(json!(""));
            f.entry("options").or_insert(json!([]));
            f.insert(
                "network_container".into(),
                json!(s.parent_container(&view, &cidr)),
            );
            let id = s.insert(kind, f);
            created(s, id, params)
        }
        "record:host" => {
            let Some(name) = f.get("name").and_then(Value::as_str).map(str::to_owned) else {
                return proto("Field 'name' is required");
            };
            let dns = f
                .get("configure_for_dns")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            let view = f
                .get("view")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_owned();
            let nview = f
                .get("network_view")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_owned();
            if dns && let Err(r) = check_zone(s, &name) {
                return *r;
            }
            if s.objects.values().any(|o| {
                o.kind == "record:host"
                    && o.text("name") == Some(name.as_str())
                    && o.text("view").unwrap_or("default") == view
            }) {
                return conflict(&format!("The record '{name}' already exists."));
            }
            for (list, key) in [("ipv4addrs", "ipv4addr"), ("ipv6addrs", "ipv6addr")] {
                let Some(Value::Array(entries)) = f.get(list).cloned() else {
                    continue;
                };
                let mut out = Vec::new();
                for e in entries {
                    let mut e = e.as_object().cloned().unwrap_or_default();
                    let Some(v) = e.get(key).cloned() else {
                        return proto(&format!("Field '{key}' is required in {list}"));
                    };
                    let ip = match resolve_ip(s, &v, &nview, key) {
                        Ok(ip) => ip,
                        Err(r) => return *r,
                    };
                    e.insert(key.into(), json!(ip.to_string()));
                    out.push(Value::Object(e));
                }
                f.insert(list.into(), Value::Array(out));
            }
            if f.get("ipv4addrs")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
                && f.get("ipv6addrs")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty)
            {
                return proto("The record requires at least one IP address");
            }
            f.insert("view".into(), json!(view));
            f.insert("network_view".into(), json!(nview));
            f.insert("configure_for_dns".into(), json!(dns));
            let id = s.insert(kind, f);
            created(s, id, params)
        }
        "fixedaddress" | "ipv6fixedaddress" => {
            let v4 = kind == "fixedaddress";
            let key = if v4 { "ipv4addr" } else { "ipv6addr" };
            let view = f
                .get("network_view")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_owned();
            let Some(v) = f.get(key).cloned() else {
                return proto(&format!("Field '{key}' is required"));
            };
            let ip = match resolve_ip(s, &v, &view, key) {
                Ok(ip) => ip,
                Err(r) => return *r,
            };
            if v4 && !f.contains_key("mac") {
                return proto("Field 'mac' is required when match_client is MAC_ADDRESS");
            }
            f.insert(key.into(), json!(ip.to_string()));
            f.insert("network_view".into(), json!(view));
            let id = s.insert(kind, f);
            created(s, id, params)
        }
        "record:a" | "record:aaaa" | "record:ptr" => {
            let key = if kind == "record:aaaa" {
                "ipv6addr"
            } else {
                "ipv4addr"
            };
            let key = if kind == "record:ptr" && f.contains_key("ipv6addr") {
                "ipv6addr"
            } else {
                key
            };
            let view = f
                .get("view")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_owned();
            let nview = s
                .dns_views
                .get(&view)
                .cloned()
                .unwrap_or_else(|| "default".into());
            let Some(v) = f.get(key).cloned() else {
                return proto(&format!("Field '{key}' is required"));
            };
            let ip = if kind == "record:ptr" {
                match v.as_str().and_then(|t| t.parse::<IpAddr>().ok()) {
                    Some(ip) => ip,
                    None => return proto(&format!("Invalid value for {key}")),
                }
            } else {
                match resolve_ip(s, &v, &nview, key) {
                    Ok(ip) => ip,
                    Err(r) => return *r,
                }
            };
            f.insert(key.into(), json!(ip.to_string()));
            f.insert("view".into(), json!(view));
            if kind == "record:ptr" {
                let Some(target) = f.get("ptrdname").and_then(Value::as_str).map(str::to_owned)
                else {
                    return proto("Field 'ptrdname' is required");
                };
                let _ = target;
                let reverse = match ip {
                    IpAddr::V4(a) => {
                        let o = a.octets();
                        format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
                    }
                    IpAddr::V6(a) => {
                        let hex: String = a.octets().iter().map(|b| format!("{b:02x}")).collect();
                        let mut n: Vec<String> = hex.chars().rev().map(String::from).collect();
                        n.push("ip6.arpa".into());
                        n.join(".")
                    }
                };
                f.insert("name".into(), json!(reverse));
            } else {
                let name = f
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                if let Err(r) = check_zone(s, &name) {
                    return *r;
                }
            }
            let id = s.insert(kind, f);
            created(s, id, params)
        }
        other => proto(&format!("Object type {other} cannot be created here")),
    }
}

fn update(
    s: &mut FakeWapiState,
    id: u64,
    params: &HashMap<String, String>,
    body: Value,
) -> Response {
    let Value::Object(changes) = body else {
        return proto("The request body must be a JSON object");
    };
    if let Err(r) = check_eas(s, changes.get("extattrs")) {
        return *r;
    }
    let o = s.objects[&id].clone();
    let mut f = o.fields.clone();
    let view = s.view_of(&o);
    for (k, v) in changes {
        match k.as_str() {
            "ipv4addrs" | "ipv6addrs" if o.kind == "record:host" => {
                let key = if k == "ipv4addrs" {
                    "ipv4addr"
                } else {
                    "ipv6addr"
                };
                let mut out = Vec::new();
                let old = o.addresses();
                for e in v.as_array().cloned().unwrap_or_default() {
                    let mut e = e.as_object().cloned().unwrap_or_default();
                    let raw = e.get(key).cloned().unwrap_or(Value::Null);
                    let keep = raw
                        .as_str()
                        .and_then(|t| t.parse::<IpAddr>().ok())
                        .filter(|a| old.contains(a));
                    let ip = match keep {
                        Some(a) => a,
                        None => match resolve_ip(s, &raw, &view, key) {
                            Ok(a) => a,
                            Err(r) => return *r,
                        },
                    };
                    e.remove("_ref");
                    e.remove("host");
                    if let Some(m) = e.get("mac").and_then(Value::as_str)
                        && m.len() != 17
                    {
                        return proto(&format!("Invalid value for mac: {m}"));
                    }
                    e.insert(key.into(), json!(ip.to_string()));
                    out.push(Value::Object(e));
                }
                f.insert(k, Value::Array(out));
            }
            "name" if o.kind == "record:host" => {
                let name = v.as_str().unwrap_or_default().to_owned();
                let hview = o.text("view").unwrap_or("default");
                if s.objects.values().any(|x| {
                    x.id != id
                        && x.kind == "record:host"
                        && x.text("name") == Some(name.as_str())
                        && x.text("view").unwrap_or("default") == hview
                }) {
                    return conflict(&format!("The record '{name}' already exists."));
                }
                if o.fields.get("configure_for_dns").and_then(Value::as_bool) == Some(true)
                    && let Err(r) = check_zone(s, &name)
                {
                    return *r;
                }
                f.insert(k, v);
            }
            "mac" => {
                if v.as_str().is_none_or(|m| m.len() != 17) {
                    return proto(&format!("Invalid value for mac: {v}"));
                }
                f.insert(k, v);
            }
            "network" | "network_view" | "ipv4addr" | "ipv6addr" => {
                return proto(&format!("Field {k} cannot be changed"));
            }
            _ => {
                f.insert(k, v);
            }
        }
    }
    if o.kind == "record:host"
        && f.get("ipv4addrs")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
        && f.get("ipv6addrs")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
    {
        return proto("The record requires at least one IP address");
    }
    if let Some(obj) = s.objects.get_mut(&id) {
        obj.fields = f;
    }
    let o = &s.objects[&id];
    if params.contains_key("_return_fields") || params.contains_key("_return_fields+") {
        json_answer(200, &s.render(o, &wanted_fields(&o.kind, params)))
    } else {
        json_answer(200, &json!(s.reference(o)))
    }
}

/// Deletes an object; a network takes its fixed addresses with it.
fn delete(s: &mut FakeWapiState, id: u64) {
    let Some(o) = s.objects.remove(&id) else {
        return;
    };
    if o.kind == "network" || o.kind == "ipv6network" {
        let (Some(cidr), view) = (o.cidr(), o.network_view()) else {
            return;
        };
        s.objects.retain(|_, x| {
            !((x.kind == "fixedaddress" || x.kind == "ipv6fixedaddress")
                && x.network_view() == view
                && x.addresses().iter().any(|a| cidr.contains(a)))
        });
    }
}

fn call_function(s: &mut FakeWapiState, id: u64, func: &str, args: Value) -> Response {
    let o = s.objects[&id].clone();
    let view = o.network_view();
    let Some(cidr) = o.cidr() else {
        return proto(&format!("Function {func} is not valid for this object"));
    };
    let num = args.get("num").and_then(Value::as_u64).unwrap_or(1) as usize;
    match func {
        "next_available_ip" if o.kind == "network" || o.kind == "ipv6network" => {
            let exclude: Vec<IpAddr> = args
                .get("exclude")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str()?.parse().ok())
                .collect();
            let ips = s.next_ips(&view, &cidr, num, &exclude);
            if ips.len() < num {
                return conflict(&format!(
                    "Cannot find {num} available IP address(es) in this network"
                ));
            }
            json_answer(
                200,
                &json!({"ips": ips.iter().map(ToString::to_string).collect::<Vec<_>>()}),
            )
        }
        "next_available_network" => {
            let Some(len) = args
                .get("cidr")
                .and_then(Value::as_u64)
                .and_then(|c| u8::try_from(c).ok())
            else {
                return proto("Argument cidr is required");
            };
            let nets = s.next_networks(&view, &cidr, len, num);
            if nets.len() < num {
                return conflict(&format!(
                    "Cannot find {num} available network(s) in this container"
                ));
            }
            json_answer(
                200,
                &json!({"networks": nets.iter().map(ToString::to_string).collect::<Vec<_>>()}),
            )
        }
        other => proto(&format!("Function {other} is not valid for this object")),
    }
}
