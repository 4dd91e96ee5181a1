//! vRA wire shapes: the result dicts the actions must return. The `inputs` dict vRA hands an
//! action is read with the lenient [`Field`] reader of `contracts::input`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::contracts::input::Field;
use crate::domain::{Block, Family, Network, Tag};

/// The endpoint of a request: nested under `endpoint` for every operation except Validate
/// Endpoint, which has its fields at the top level.
pub fn endpoint<'a>(root: &Field<'a>) -> Field<'a> {
    let nested = root.get("endpoint");
    if nested.is_object() {
        nested
    } else {
        root.clone()
    }
}

/// `"IPv4"` / `"IPv6"` as the contract spells them.
pub fn ip_version(family: Family) -> &'static str {
    match family {
        Family::V4 => "IPv4",
        Family::V6 => "IPv6",
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TagOut {
    pub key: String,
    pub value: String,
}

fn tags_out(tags: &[Tag]) -> Vec<TagOut> {
    tags.iter()
        .map(|t| TagOut {
            key: t.key.clone(),
            value: t.value.clone(),
        })
        .collect()
}

/// `IpRange` (contract p.11-12). `subnetPrefixLength` is sent as text, the way VMware's reference
/// plug-in sends it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IpRange {
    pub id: String,
    pub name: String,
    pub description: String,
    #[serde(rename = "startIPAddress")]
    pub start_ip_address: String,
    #[serde(rename = "endIPAddress")]
    pub end_ip_address: String,
    pub ip_version: &'static str,
    pub address_space_id: String,
    pub subnet_prefix_length: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_address: Option<String>,
    pub dns_server_addresses: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub dns_search_domains: Vec<String>,
    pub tags: Vec<TagOut>,
    pub properties: BTreeMap<String, String>,
}

impl IpRange {
    pub fn from_network(n: &Network) -> Self {
        let i = &n.info;
        let mut properties = BTreeMap::new();
        properties.insert("cidr".to_owned(), i.cidr.to_string());
        if let Some(v) = i.vlan {
            properties.insert("vlan".to_owned(), v.to_string());
        }
        if let Some(free) = i.free {
            properties.insert("freeAddresses".to_owned(), free.to_string());
        }
        if let Some(b) = &i.block {
            properties.insert("block".to_owned(), b.clone());
        }
        IpRange {
            id: n.id.to_string(),
            name: i.name.clone(),
            description: i.description.clone().unwrap_or_default(),
            start_ip_address: i.range_start.to_string(),
            end_ip_address: i.range_end.to_string(),
            ip_version: ip_version(n.family()),
            address_space_id: i.address_space.clone(),
            subnet_prefix_length: i.cidr.prefix_len().to_string(),
            gateway_address: i.gateway.map(|g| g.to_string()),
            dns_server_addresses: i.dns_servers.iter().map(ToString::to_string).collect(),
            domain: i.dns_domain.clone(),
            dns_search_domains: i.dns_search_domains.clone(),
            tags: tags_out(&i.tags),
            properties,
        }
    }
}

/// An [`IpRange`] serialised straight from the [`Network`] it describes, to the same JSON, without
/// building one. Get IP Ranges sends pages of 1,000: building `IpRange`s allocated and freed
/// some twenty small objects per range (~20,000 per page), and on a fragmented glibc heap those
/// allocator calls were most of a warm page's time (15 ms of an Infoblox-backed page in
/// `cargo bench --bench gateway -- 2`, which runs the fakes in the gateway's process).
pub struct IpRangeOut<'a>(pub &'a Network);

/// A value written as JSON text through its `Display`, without an intermediate `String`.
struct AsText<T>(T);

impl<T: std::fmt::Display> Serialize for AsText<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// `dnsServerAddresses`: the addresses as text.
struct AddressesText<'a>(&'a [std::net::IpAddr]);

impl Serialize for AddressesText<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(AsText))
    }
}

/// `properties`, keys in the order of [`IpRange`]'s `BTreeMap` (block, cidr, freeAddresses,
/// vlan).
struct PropertiesOut<'a>(&'a crate::domain::NetworkInfo);

impl Serialize for PropertiesOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let i = self.0;
        let mut m = s.serialize_map(None)?;
        if let Some(b) = &i.block {
            m.serialize_entry("block", b)?;
        }
        m.serialize_entry("cidr", &AsText(&i.cidr))?;
        if let Some(free) = i.free {
            m.serialize_entry("freeAddresses", &AsText(free))?;
        }
        if let Some(v) = i.vlan {
            m.serialize_entry("vlan", &AsText(v))?;
        }
        m.end()
    }
}

impl Serialize for IpRangeOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let n = self.0;
        let i = &n.info;
        let mut r = s.serialize_struct("IpRange", 14)?;
        r.serialize_field("id", n.id.as_str())?;
        r.serialize_field("name", &i.name)?;
        r.serialize_field("description", i.description.as_deref().unwrap_or_default())?;
        r.serialize_field("startIPAddress", &AsText(i.range_start))?;
        r.serialize_field("endIPAddress", &AsText(i.range_end))?;
        r.serialize_field("ipVersion", ip_version(n.family()))?;
        r.serialize_field("addressSpaceId", &i.address_space)?;
        r.serialize_field("subnetPrefixLength", &AsText(i.cidr.prefix_len()))?;
        match i.gateway {
            Some(g) => r.serialize_field("gatewayAddress", &AsText(g))?,
            None => r.skip_field("gatewayAddress")?,
        }
        r.serialize_field("dnsServerAddresses", &AddressesText(&i.dns_servers))?;
        match &i.dns_domain {
            Some(d) => r.serialize_field("domain", d)?,
            None => r.skip_field("domain")?,
        }
        r.serialize_field("dnsSearchDomains", &i.dns_search_domains)?;
        // `Tag` serialises as `TagOut` does: {"key", "value"}.
        r.serialize_field("tags", &i.tags)?;
        r.serialize_field("properties", &PropertiesOut(i))?;
        r.end()
    }
}

/// `IpBlock` (contract p.21). The contract names the address space `addressSpace`, the SDK sample
/// `addressSpaceId`; both are sent.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IpBlock {
    pub id: String,
    pub name: String,
    pub description: String,
    #[serde(rename = "ipBlockCIDR")]
    pub ip_block_cidr: String,
    pub ip_version: &'static str,
    pub address_space_id: String,
    pub address_space: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway_address: Option<String>,
    pub dns_server_addresses: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub dns_search_domains: Vec<String>,
    pub tags: Vec<TagOut>,
    pub properties: BTreeMap<String, String>,
}

impl IpBlock {
    pub fn from_block(b: &Block) -> Self {
        let i = &b.info;
        IpBlock {
            id: b.id.to_string(),
            name: i.name.clone(),
            description: i.description.clone().unwrap_or_default(),
            ip_block_cidr: i.cidr.to_string(),
            ip_version: ip_version(Family::of(&i.cidr)),
            address_space_id: i.address_space.clone(),
            address_space: i.address_space.clone(),
            gateway_address: i.gateway.map(|g| g.to_string()),
            dns_server_addresses: i.dns_servers.iter().map(ToString::to_string).collect(),
            domain: i.dns_domain.clone(),
            dns_search_domains: i.dns_search_domains.clone(),
            tags: tags_out(&i.tags),
            properties: BTreeMap::new(),
        }
    }
}

/// `AllocationResult` (contract p.15) with the per-NIC network settings.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AllocationResult {
    pub ip_allocation_id: String,
    pub ip_range_id: String,
    pub ip_version: &'static str,
    pub ip_addresses: Vec<String>,
    pub subnet_prefix_length: String,
    pub gateway_addresses: Vec<String>,
    pub dns_server_addresses: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub dns_search_domains: Vec<String>,
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeallocationResult {
    pub ip_deallocation_id: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ranges_serialise_straight_from_networks_as_ip_range_does() {
        use crate::domain::{NetworkId, NetworkInfo};
        let base = NetworkInfo::bare(
            "default/10.20.0.0/24",
            "lab \"servers\"",
            "10.20.0.0/24".parse().expect("cidr"),
            (
                "10.20.0.2".parse().expect("ip"),
                "10.20.0.254".parse().expect("ip"),
            ),
        );
        let full = NetworkInfo {
            description: Some("web\ttier".into()),
            gateway: Some("10.20.0.1".parse().expect("ip")),
            dns_servers: vec![
                "10.20.0.53".parse().expect("ip"),
                "2001:db8::53".parse().expect("ip"),
            ],
            dns_domain: Some("lab.example.com".into()),
            dns_search_domains: vec!["lab.example.com".into(), "example.com".into()],
            vlan: Some(20),
            tags: vec![
                Tag {
                    key: "Site".into(),
                    value: "lab".into(),
                },
                Tag {
                    key: "vRA-Enabled".into(),
                    value: "true".into(),
                },
            ],
            free: Some(u64::MAX),
            block: Some("ipam.YmxvY2s".into()),
            ..base.clone()
        };
        let v6 = NetworkInfo {
            cidr: "2001:db8:20::/64".parse().expect("cidr"),
            range_start: "2001:db8:20::2".parse().expect("ip"),
            range_end: "2001:db8:20::ffff:ffff:ffff:fffe".parse().expect("ip"),
            gateway: Some("2001:db8:20::1".parse().expect("ip")),
            free: Some(0),
            ..base.clone()
        };
        for info in [base, full, v6] {
            let n = Network {
                id: NetworkId::new("ipam", &info.backend_id),
                info,
            };
            assert_eq!(
                serde_json::to_string(&IpRangeOut(&n)).expect("json"),
                serde_json::to_string(&IpRange::from_network(&n)).expect("json"),
            );
        }
    }

    fn field_of(v: &serde_json::Value) -> Field<'_> {
        Field::root(v).expect("object")
    }

    #[test]
    fn the_endpoint_is_nested_except_for_validate() {
        let nested = json!({"endpoint": {"authCredentialsLink": "x"}});
        let f = field_of(&nested);
        assert_eq!(endpoint(&f).path(), "endpoint");
        let top = json!({"authCredentialsLink": "x"});
        let f = field_of(&top);
        assert_eq!(endpoint(&f).path(), "");
    }
}
