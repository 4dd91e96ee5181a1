//! `kind = "embedded"`: the embedded store's configuration (its seeded networks and blocks) and
//! its validation.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, parse_addr, parse_cidr};
use crate::domain::{BlockInfo, NetworkInfo, Tag};
use crate::ipmath::{bounds, next_addr, usable_range};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedConfig {
    /// The redb data file; relative paths are inside `server.state_dir`.
    #[serde(default = "default_embedded_path")]
    pub path: PathBuf,
    #[serde(default)]
    pub networks: Vec<NetworkConfig>,
    #[serde(default)]
    pub blocks: Vec<BlockConfig>,
    /// `[dns.<name>]` section registering the names of this backend's addresses (a network's
    /// own `dns` key overrides it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<String>,
}

fn default_embedded_path() -> PathBuf {
    PathBuf::from("embedded.redb")
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    pub name: String,
    pub cidr: String,
    pub description: Option<String>,
    pub gateway: Option<String>,
    #[serde(default)]
    pub dns_servers: Vec<String>,
    pub domain: Option<String>,
    #[serde(default)]
    pub search_domains: Vec<String>,
    #[serde(default = "default_space")]
    pub address_space: String,
    pub vlan: Option<u16>,
    /// First and last address to hand out (default: every usable host).
    pub range_start: Option<String>,
    pub range_end: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// `[dns.<name>]` section for this network's addresses, instead of the backend's `dns`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BlockConfig {
    pub name: String,
    pub cidr: String,
    pub description: Option<String>,
    #[serde(default = "default_space")]
    pub address_space: String,
    #[serde(default)]
    pub dns_servers: Vec<String>,
    pub domain: Option<String>,
    #[serde(default)]
    pub search_domains: Vec<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

fn default_space() -> String {
    "default".into()
}

fn tags(map: &BTreeMap<String, String>) -> Vec<Tag> {
    map.iter()
        .map(|(k, v)| Tag {
            key: k.clone(),
            value: v.clone(),
        })
        .collect()
}

fn validate_network(key: &str, n: &NetworkConfig) -> Result<NetworkInfo, ConfigError> {
    if n.name.trim().is_empty() {
        return Err(ConfigError::new(format!("{key}.name"), "must not be empty"));
    }
    let cidr = parse_cidr(&format!("{key}.cidr"), &n.cidr)?;
    let in_net = |field: &str, text: &str| -> Result<IpAddr, ConfigError> {
        let k = format!("{key}.{field}");
        let a = parse_addr(&k, text)?;
        if !cidr.contains(&a) {
            return Err(ConfigError::new(k, format!("{a} is outside {cidr}")));
        }
        Ok(a)
    };
    let gateway = n
        .gateway
        .as_deref()
        .map(|g| in_net("gateway", g))
        .transpose()?;
    let (mut start, mut end) = usable_range(&cidr);
    if let Some(s) = &n.range_start {
        start = in_net("range_start", s)?;
    } else if gateway == Some(start) && start < end {
        // The range starts after a gateway on the first host, as phpIPAM's and Infoblox's do
        // and as carved networks do here (the gateway is never handed out either way).
        start = next_addr(start);
    }
    if let Some(e) = &n.range_end {
        end = in_net("range_end", e)?;
    }
    if start > end {
        return Err(ConfigError::new(
            format!("{key}.range_start"),
            format!("{start} is after range_end {end}"),
        ));
    }
    let dns_servers = n
        .dns_servers
        .iter()
        .enumerate()
        .map(|(i, d)| parse_addr(&format!("{key}.dns_servers[{i}]"), d))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NetworkInfo {
        backend_id: format!("{}/{}", n.address_space, cidr),
        name: n.name.trim().to_owned(),
        description: n.description.clone(),
        cidr,
        range_start: start,
        range_end: end,
        gateway,
        dns_servers,
        dns_domain: n.domain.clone(),
        dns_search_domains: n.search_domains.clone(),
        address_space: n.address_space.clone(),
        vlan: n.vlan,
        tags: tags(&n.tags),
        free: None,
        block: None,
        owner: None,
    })
}

fn validate_block(key: &str, b: &BlockConfig) -> Result<BlockInfo, ConfigError> {
    if b.name.trim().is_empty() {
        return Err(ConfigError::new(format!("{key}.name"), "must not be empty"));
    }
    let cidr = parse_cidr(&format!("{key}.cidr"), &b.cidr)?;
    let dns_servers = b
        .dns_servers
        .iter()
        .enumerate()
        .map(|(i, d)| parse_addr(&format!("{key}.dns_servers[{i}]"), d))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(BlockInfo {
        backend_id: format!("block:{}", b.name.trim()),
        name: b.name.trim().to_owned(),
        description: b.description.clone(),
        cidr,
        address_space: b.address_space.clone(),
        gateway: None,
        dns_servers,
        dns_domain: b.domain.clone(),
        dns_search_domains: b.search_domains.clone(),
        tags: tags(&b.tags),
    })
}

/// Validates the embedded backend section `key` (`backends.<name>`): its data file (relative to
/// `state_dir`), its networks (no two overlapping in one address space) and its blocks (free
/// space, unique names).
pub(crate) fn validate_embedded(
    key: &str,
    e: &EmbeddedConfig,
    state_dir: &Path,
) -> Result<(PathBuf, Vec<NetworkInfo>, Vec<BlockInfo>), ConfigError> {
    let mut networks: Vec<NetworkInfo> = Vec::new();
    // (address space, family, first address) → (last address, index): finds an
    // overlap in O(log n), so large seeded configs validate quickly.
    let mut seen: BTreeMap<(String, bool, u128), (u128, usize)> = BTreeMap::new();
    for (i, n) in e.networks.iter().enumerate() {
        let item = format!("{key}.networks[{i}]");
        let net = validate_network(&item, n)?;
        let (lo, hi) = bounds(&net.cidr);
        let v6 = matches!(net.cidr, IpNet::V6(_));
        let space = net.address_space.clone();
        let before = seen
            .range(..=(space.clone(), v6, lo))
            .next_back()
            .filter(|((s, f, _), (end, _))| s == &space && *f == v6 && *end >= lo);
        let after = seen
            .range((space.clone(), v6, lo)..)
            .next()
            .filter(|((s, f, start), _)| s == &space && *f == v6 && *start <= hi);
        if let Some((_, (_, j))) = before.or(after) {
            let other: &NetworkInfo = &networks[*j];
            return Err(ConfigError::new(
                format!("{item}.cidr"),
                format!(
                    "{} overlaps network '{}' ({}) in address space '{}'",
                    net.cidr, other.name, other.cidr, net.address_space
                ),
            ));
        }
        seen.insert((space, v6, lo), (hi, networks.len()));
        networks.push(net);
    }
    let mut blocks: Vec<BlockInfo> = Vec::new();
    for (i, b) in e.blocks.iter().enumerate() {
        let item = format!("{key}.blocks[{i}]");
        let block = validate_block(&item, b)?;
        if let Some(n) = networks.iter().find(|n| {
            n.address_space == block.address_space
                && (n.cidr.contains(&block.cidr) || block.cidr.contains(&n.cidr))
        }) {
            return Err(ConfigError::new(
                format!("{item}.cidr"),
                format!(
                    "{} overlaps network '{}' ({}); blocks must be free space",
                    block.cidr, n.name, n.cidr
                ),
            ));
        }
        if blocks.iter().any(|o| o.backend_id == block.backend_id) {
            return Err(ConfigError::new(
                format!("{item}.name"),
                format!("duplicate block name '{}'", block.name),
            ));
        }
        blocks.push(block);
    }
    let path = if e.path.is_absolute() {
        e.path.clone()
    } else {
        state_dir.join(&e.path)
    };
    Ok((path, networks, blocks))
}
