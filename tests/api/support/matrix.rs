//! The backend matrix: the same end-to-end suites (vRA now, Avi next) run against every backend
//! kind, each behind a real [`ipam_gateway::Application`] holding the **standard lab topology**.
//!
//! The topology is data ([`LAB_NETWORKS`], [`LAB_BLOCK`]): the networks the vRA suites use —
//! `lab-servers`, `lab-dmz`, `prod-servers` (address space `prod`), `lab-servers-v6`, `lab-tiny`
//! (five addresses, for exhaustion) — and the block `lab-on-demand`. Every kind must present
//! them through the gateway with the same names, CIDRs, address spaces, gateways, DNS servers,
//! DNS domain, search domains and VLANs; `vra_python::every_backend_serves_the_standard_lab_topology`
//! checks exactly that, and the Python suite receives the same data as `IPAMGW_VRA_LAB` (see
//! [`lab_json`]) so it asserts it through the vRA contract without knowing which backend it talks
//! to.
//!
//! What the topology deliberately leaves out, because backends cannot all express it:
//! - **range limits** (`range_start`/`range_end`): the embedded `prod-servers` hands out
//!   172.16.10.10–.200 only; phpIPAM has no per-subnet range (its range is the subnet's usable
//!   hosts). Suites may only assume the range lies inside the CIDR and that a fresh network hands
//!   out its `range_start` first.
//! - **tags**: embedded tags are free `key = value` pairs; phpIPAM exposes its custom fields as
//!   tags under their own names (`custom_vRA_Range = 1`, …). Suites must not filter on tags.
//! - **descriptions**: phpIPAM names a network by its description, so there the description is
//!   the name.
//!
//! How each kind holds the topology:
//! - [`BackendKind::Embedded`]: the embedded default config plus `lab-tiny`
//!   ([`crate::vra_common::config_with_tiny`]), i.e. what the suites always ran on.
//! - [`BackendKind::Phpipam`]: a [`FakePhpipam`] seeded by [`seed_phpipam`]: sections `default`
//!   and `prod` (the section is the address space), one nameserver set per distinct DNS list,
//!   VLANs 20 and 30, each subnet with a gateway address record, `custom_vRA_Range = 1` on the
//!   exposed ones, and the DNS domain and search domains in the subnet custom fields
//!   `custom_dnsDomain` / `custom_dnsSearch` (wired with `dns_domain_field` /
//!   `search_domains_field`). One subnet is left unexposed (`custom_vRA_Range = 0`) so the
//!   exposure filter is exercised end to end. The fake lives as long as the [`LabApp`].
//!
//! - [`BackendKind::Infoblox`]: a [`FakeWapi`] seeded by [`seed_infoblox`] (see there), host
//!   records, networks exposed by the `vRA-Enabled=true` extensible attribute.
//!
//! ## Adding a kind
//! 1. One more arm in [`BackendKind`] (and in [`BackendKind::ALL`] / [`BackendKind::name`]).
//! 2. A seeding function, `seed_infoblox(&mut FakeWapiState) -> …`, that creates the topology
//!    from [`LAB_NETWORKS`] / [`LAB_BLOCK`] in the fake WAPI: a network view per address space,
//!    the DHCP `routers` option for the gateway, `domain-name-servers` / `domain-name` /
//!    `domain-search` options for the DNS data, a VLAN EA, an exposure EA (e.g.
//!    `vRA-Enabled=true`) on the exposed networks, and a network container for the block.
//! 3. One more variant of [`Upstream`] holding that fake, and one more arm in [`spawn_lab`]
//!    that starts the fake, seeds it and writes the `[backends.ipam]` config pointing at it.
//!
//! The suites then get a `#[tokio::test]` for the new kind (see `tests/api/vra_python.rs`) and
//! `every_backend_serves_the_standard_lab_topology` covers it by iterating [`BackendKind::ALL`].

use std::fmt;
use std::ops::Deref;

use serde_json::{Value, json};

use super::infoblox_fake::{FakeWapi, FakeWapiState, SeedNetwork};
use super::phpipam_fake::{FakePhpipam, FakeState};
use super::{AppOptions, TestApp, spawn_with};

/// A backend the suites run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Embedded,
    Phpipam,
    Infoblox,
}

impl BackendKind {
    pub const ALL: &'static [BackendKind] = &[
        BackendKind::Embedded,
        BackendKind::Phpipam,
        BackendKind::Infoblox,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Embedded => "embedded",
            BackendKind::Phpipam => "phpipam",
            BackendKind::Infoblox => "infoblox",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One network of the standard lab topology, as every backend must present it.
#[derive(Debug, Clone, Copy)]
pub struct LabNetwork {
    pub name: &'static str,
    pub cidr: &'static str,
    pub address_space: &'static str,
    pub gateway: &'static str,
    pub dns_servers: &'static [&'static str],
    pub domain: &'static str,
    pub search_domains: &'static [&'static str],
    pub vlan: Option<u16>,
}

/// The block on-demand networks are carved from.
#[derive(Debug, Clone, Copy)]
pub struct LabBlock {
    pub name: &'static str,
    pub cidr: &'static str,
    pub address_space: &'static str,
    pub dns_servers: &'static [&'static str],
    pub domain: &'static str,
}

/// The networks of `config/ipam-gateway.toml` plus `lab-tiny` (`vra_common::TINY_NETWORK`).
pub const LAB_NETWORKS: &[LabNetwork] = &[
    LabNetwork {
        name: "lab-servers",
        cidr: "10.20.0.0/24",
        address_space: "default",
        gateway: "10.20.0.1",
        dns_servers: &["10.20.0.53", "10.20.0.54"],
        domain: "lab.example.com",
        search_domains: &["lab.example.com", "example.com"],
        vlan: Some(20),
    },
    LabNetwork {
        name: "lab-dmz",
        cidr: "10.30.0.0/26",
        address_space: "default",
        gateway: "10.30.0.1",
        dns_servers: &["10.20.0.53"],
        domain: "dmz.example.com",
        search_domains: &[],
        vlan: Some(30),
    },
    LabNetwork {
        name: "prod-servers",
        cidr: "172.16.10.0/24",
        address_space: "prod",
        gateway: "172.16.10.1",
        dns_servers: &["172.16.0.53"],
        domain: "prod.example.com",
        search_domains: &[],
        vlan: None,
    },
    LabNetwork {
        name: "lab-servers-v6",
        cidr: "2001:db8:20::/64",
        address_space: "default",
        gateway: "2001:db8:20::1",
        dns_servers: &["2001:db8:20::53"],
        domain: "lab.example.com",
        search_domains: &[],
        vlan: Some(20),
    },
    LabNetwork {
        name: "lab-tiny",
        cidr: "10.40.0.0/29",
        address_space: "default",
        gateway: "10.40.0.1",
        dns_servers: &["10.20.0.53"],
        domain: "tiny.example.com",
        search_domains: &[],
        vlan: None,
    },
];

pub const LAB_BLOCK: LabBlock = LabBlock {
    name: "lab-on-demand",
    cidr: "10.100.0.0/16",
    address_space: "default",
    dns_servers: &["10.20.0.53"],
    domain: "lab.example.com",
};

/// Addresses `lab-tiny` can hand out (a /29 minus its gateway).
pub const LAB_TINY_FREE: u64 = 5;

/// The topology as JSON, in the native API's field names (`IPAMGW_VRA_LAB` for Python).
pub fn lab_json() -> Value {
    json!({
        "networks": LAB_NETWORKS.iter().map(|n| json!({
            "name": n.name,
            "cidr": n.cidr,
            "address_space": n.address_space,
            "gateway": n.gateway,
            "dns_servers": n.dns_servers,
            "dns_domain": n.domain,
            "dns_search_domains": n.search_domains,
            "vlan": n.vlan,
        })).collect::<Vec<_>>(),
        "block": {
            "name": LAB_BLOCK.name,
            "cidr": LAB_BLOCK.cidr,
            "address_space": LAB_BLOCK.address_space,
            "dns_servers": LAB_BLOCK.dns_servers,
            "dns_domain": LAB_BLOCK.domain,
        },
        "tiny_free": LAB_TINY_FREE,
    })
}

/// Whatever must outlive the gateway (a fake upstream), per kind.
enum Upstream {
    InProcess,
    Phpipam(FakePhpipam),
    Infoblox(FakeWapi),
}

/// A gateway on the standard lab topology; derefs to its [`TestApp`].
pub struct LabApp {
    pub kind: BackendKind,
    pub app: TestApp,
    upstream: Upstream,
}

impl Deref for LabApp {
    type Target = TestApp;

    fn deref(&self) -> &TestApp {
        &self.app
    }
}

impl LabApp {
    /// The fake phpIPAM behind a [`BackendKind::Phpipam`] lab.
    pub fn phpipam(&self) -> Option<&FakePhpipam> {
        match &self.upstream {
            Upstream::Phpipam(f) => Some(f),
            _ => None,
        }
    }

    /// The fake WAPI behind a [`BackendKind::Infoblox`] lab.
    pub fn infoblox(&self) -> Option<&FakeWapi> {
        match &self.upstream {
            Upstream::Infoblox(f) => Some(f),
            _ => None,
        }
    }

    /// Stops the gateway, then its upstream.
    pub async fn stop(self) {
        self.app.stop().await;
        drop(self.upstream);
    }
}

/// Starts the real `Application` (client `demo` / `demo-secret`, bound to backend `local` for
/// the embedded kind and `ipam` otherwise) on the standard lab topology. `tls` as in
/// [`AppOptions::tls`].
pub async fn spawn_lab(kind: BackendKind, tls: bool) -> LabApp {
    let (config, upstream) = match kind {
        BackendKind::Embedded => (crate::vra_common::config_with_tiny(), Upstream::InProcess),
        BackendKind::Phpipam => {
            let mut state = FakeState::empty();
            let lab = seed_phpipam(&mut state);
            let fake = FakePhpipam::start_with(state).await;
            (phpipam_config(&fake.url, &lab), Upstream::Phpipam(fake))
        }
        BackendKind::Infoblox => {
            let mut state = FakeWapiState::empty();
            seed_infoblox(&mut state);
            let fake = FakeWapi::start_with(state).await;
            (infoblox_config(&fake.url), Upstream::Infoblox(fake))
        }
    };
    let app = spawn_with(AppOptions {
        config,
        tls,
        metrics: false,
    })
    .await;
    LabApp {
        kind,
        app,
        upstream,
    }
}

/// What [`seed_phpipam`] created that the config must name.
#[derive(Debug, Clone)]
pub struct PhpipamLab {
    pub block: u64,
    /// Subnet id per lab network name.
    pub subnets: Vec<(&'static str, u64)>,
}

/// Subnet custom fields holding the DNS domain and the search domains.
pub const PHPIPAM_DOMAIN_FIELD: &str = "custom_dnsDomain";
pub const PHPIPAM_SEARCH_FIELD: &str = "custom_dnsSearch";

/// Seeds a fake phpIPAM with the standard lab topology, as an operator would in phpIPAM's UI.
pub fn seed_phpipam(s: &mut FakeState) -> PhpipamLab {
    s.add_subnet_field(PHPIPAM_DOMAIN_FIELD);
    s.add_subnet_field(PHPIPAM_SEARCH_FIELD);
    let mut sections: Vec<(&str, u64)> = Vec::new();
    let mut section = |s: &mut FakeState, space: &'static str| -> u64 {
        if let Some((_, id)) = sections.iter().find(|(n, _)| *n == space) {
            return *id;
        }
        let id = s.add_section(space, &format!("address space {space}"));
        sections.push((space, id));
        id
    };
    let mut nameservers: Vec<(&[&str], u64)> = Vec::new();
    let mut nameserver = |s: &mut FakeState, servers: &'static [&'static str]| -> u64 {
        if servers.is_empty() {
            return 0;
        }
        if let Some((_, id)) = nameservers.iter().find(|(l, _)| *l == servers) {
            return *id;
        }
        let id = s.add_nameserver(&format!("dns-{}", servers.join("-")), servers);
        nameservers.push((servers, id));
        id
    };
    let mut vlans: Vec<(u16, u64)> = Vec::new();
    let mut vlan = |s: &mut FakeState, number: u16| -> u64 {
        if let Some((_, id)) = vlans.iter().find(|(n, _)| *n == number) {
            return *id;
        }
        let id = s.add_vlan(u64::from(number), &format!("lab-vlan-{number}"));
        vlans.push((number, id));
        id
    };

    let mut subnets = Vec::new();
    for n in LAB_NETWORKS {
        let sec = section(s, n.address_space);
        let ns = nameserver(s, n.dns_servers);
        let vl = n.vlan.map(|v| vlan(s, v));
        let id = s.add_subnet(sec, n.cidr, n.name, |sn| {
            sn.vra_range = 1;
            sn.nameserver = ns;
            sn.vlan = vl;
            sn.custom
                .insert(PHPIPAM_DOMAIN_FIELD.into(), n.domain.into());
            if !n.search_domains.is_empty() {
                sn.custom
                    .insert(PHPIPAM_SEARCH_FIELD.into(), n.search_domains.join(", "));
            }
        });
        s.add_gateway(id, n.gateway);
        subnets.push((n.name, id));
    }
    let sec = section(s, LAB_BLOCK.address_space);
    let ns = nameserver(s, LAB_BLOCK.dns_servers);
    let block = s.add_subnet(sec, LAB_BLOCK.cidr, LAB_BLOCK.name, |sn| {
        sn.nameserver = ns;
        sn.custom
            .insert(PHPIPAM_DOMAIN_FIELD.into(), LAB_BLOCK.domain.into());
    });
    let sec = section(s, "default");
    // A subnet of section `default` without `custom_vRA_Range = 1`: never exposed.
    let hidden = s.add_subnet(sec, "10.50.0.0/24", "not-for-vra", |sn| {
        sn.custom
            .insert(PHPIPAM_DOMAIN_FIELD.into(), "hidden.example.com".into());
    });
    s.add_gateway(hidden, "10.50.0.1");
    PhpipamLab { block, subnets }
}

/// The gateway config for a seeded fake: client `demo` on backend `ipam`.
pub fn phpipam_config(url: &str, lab: &PhpipamLab) -> String {
    format!(
        r#"
[server.tls]
mode = "off"
[metrics]
enabled = false
[clients.demo]
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$mG+Bt3ThSoG+7SkVqpyauQ$/9lV+JzeO8xIswWra3gFvERnnMYWZBWN86mkcv0xGvo"
backend = "ipam"
[backends.ipam]
kind = "phpipam"
url = "{url}"
app_id = "gateway"
username = "{user}"
password = "{password}"
sections = ["default", "prod"]
connect_timeout_secs = 2
timeout_secs = 10
dns_domain_field = "{PHPIPAM_DOMAIN_FIELD}"
search_domains_field = "{PHPIPAM_SEARCH_FIELD}"
[backends.ipam.networks]
field = "custom_vRA_Range"
value = 1
[backends.ipam.blocks]
ids = [{block}]
"#,
        user = super::phpipam::USER,
        password = super::phpipam::PASSWORD,
        block = lab.block,
    )
}

/// The extensible attribute that exposes a network to the gateway in the Infoblox lab.
pub const INFOBLOX_EXPOSE_EA: &str = "vRA-Enabled";

/// Seeds a fake WAPI with the standard lab topology, as a grid admin would: a network view per
/// address space, each network with the DHCP `routers` option (IPv6: the `Gateway` EA, DHCPv6
/// has no routers option) and no record holding it, as on many real grids (the gateway must
/// leave it out of allocations itself), `domain-name-servers` / `domain-name` /
/// `domain-search` options (IPv6: the `domain_name` / `domain_name_servers` fields), a `VLAN`
/// EA, `vRA-Enabled=true` on the exposed ones, an authoritative zone per domain, and a network
/// container for the block. `10.50.0.0/24` (view `default`) is left unexposed.
pub fn seed_infoblox(s: &mut FakeWapiState) {
    let mut zones: Vec<&str> = Vec::new();
    for n in LAB_NETWORKS {
        let mut eas = vec![(INFOBLOX_EXPOSE_EA.to_owned(), "true".to_owned())];
        if let Some(v) = n.vlan {
            eas.push(("VLAN".into(), v.to_string()));
        }
        s.add_network(SeedNetwork {
            view: n.address_space.into(),
            cidr: n.cidr.into(),
            comment: n.name.into(),
            gateway: Some(n.gateway.into()),
            dns_servers: n.dns_servers.iter().map(|d| (*d).to_owned()).collect(),
            domain: Some(n.domain.into()),
            search_domains: n.search_domains.iter().map(|d| (*d).to_owned()).collect(),
            eas,
        });
        if !zones.contains(&n.domain) {
            zones.push(n.domain);
        }
    }
    for z in zones {
        s.add_zone(z);
    }
    s.add_container(SeedNetwork {
        view: LAB_BLOCK.address_space.into(),
        cidr: LAB_BLOCK.cidr.into(),
        comment: LAB_BLOCK.name.into(),
        dns_servers: LAB_BLOCK
            .dns_servers
            .iter()
            .map(|d| (*d).to_owned())
            .collect(),
        domain: Some(LAB_BLOCK.domain.into()),
        ..SeedNetwork::default()
    });
    s.add_network(SeedNetwork {
        view: "default".into(),
        cidr: "10.50.0.0/24".into(),
        comment: "not-for-vra".into(),
        gateway: Some("10.50.0.1".into()),
        domain: Some("hidden.example.com".into()),
        ..SeedNetwork::default()
    });
}

/// The gateway config for a seeded fake WAPI: client `demo` on backend `ipam`, host records.
pub fn infoblox_config(url: &str) -> String {
    let mut views: Vec<&str> = LAB_NETWORKS.iter().map(|n| n.address_space).collect();
    views.sort_unstable();
    views.dedup();
    let views = views
        .iter()
        .map(|v| format!("\"{v}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
[server.tls]
mode = "off"
[metrics]
enabled = false
[clients.demo]
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$mG+Bt3ThSoG+7SkVqpyauQ$/9lV+JzeO8xIswWra3gFvERnnMYWZBWN86mkcv0xGvo"
backend = "ipam"
[backends.ipam]
kind = "infoblox"
url = "{url}"
username = "{user}"
password = "{password}"
network_views = [{views}]
blocks = ["{block}"]
connect_timeout_secs = 2
timeout_secs = 10
[backends.ipam.network_filter]
"{INFOBLOX_EXPOSE_EA}" = "true"
"#,
        user = super::infoblox::USER,
        password = super::infoblox::PASSWORD,
        block = LAB_BLOCK.cidr,
    )
}
