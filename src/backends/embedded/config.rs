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
    /// A file of more networks and blocks (`networks = [...]`, `blocks = [...]`): JSON when its
    /// name ends in `.json` (read element by element from the file, no document tree), TOML
    /// otherwise. For large inventories; relative paths are relative to the working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<PathBuf>,
    /// `[dns.<name>]` section registering the names of this backend's addresses (a network's
    /// own `dns` key overrides it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<String>,
    /// What `inventory` holds, once read by [`EmbeddedConfig::read_inventory`] (validation
    /// does); `print-config` shows the `inventory` key, not these.
    #[serde(skip)]
    pub from_inventory: Inventory,
}

/// The content of an `inventory` file: the same keys as the inline lists.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    #[serde(default)]
    pub networks: Vec<NetworkConfig>,
    #[serde(default)]
    pub blocks: Vec<BlockConfig>,
}

impl EmbeddedConfig {
    /// Reads the `inventory` file, if any, into `from_inventory`; `key` is the section
    /// (`backends.<name>`), errors name `{key}.inventory` and where in the file.
    pub fn read_inventory(&mut self, key: &str) -> Result<(), ConfigError> {
        let Some(path) = &self.inventory else {
            return Ok(());
        };
        let field = format!("{key}.inventory");
        let fail = |why: String| ConfigError::new(&field, format!("{}: {why}", path.display()));
        let json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        self.from_inventory = if json {
            let file = std::fs::File::open(path).map_err(|e| fail(format!("cannot read: {e}")))?;
            let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::new(file));
            let inventory: Inventory = serde_path_to_error::deserialize(&mut de)
                .map_err(|e| fail(format!("at {}: {}", e.path(), e.inner())))?;
            de.end().map_err(|e| fail(e.to_string()))?;
            inventory
        } else {
            let text =
                std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
            toml::from_str(&text).map_err(|e| fail(e.to_string()))?
        };
        Ok(())
    }

    /// Every configured network with the key naming it: the inline list, then the inventory's.
    pub fn all_networks(&self, key: &str) -> impl Iterator<Item = (String, &NetworkConfig)> {
        let inline = self.networks.iter().enumerate();
        let file = self.from_inventory.networks.iter().enumerate();
        inline
            .map(move |(i, n)| (format!("{key}.networks[{i}]"), n))
            .chain(file.map(move |(i, n)| (format!("{key}.inventory.networks[{i}]"), n)))
    }

    /// Every configured block with the key naming it: the inline list, then the inventory's.
    pub fn all_blocks(&self, key: &str) -> impl Iterator<Item = (String, &BlockConfig)> {
        let inline = self.blocks.iter().enumerate();
        let file = self.from_inventory.blocks.iter().enumerate();
        inline
            .map(move |(i, b)| (format!("{key}.blocks[{i}]"), b))
            .chain(file.map(move |(i, b)| (format!("{key}.inventory.blocks[{i}]"), b)))
    }

    /// Drops the lists once validated, so that a large inventory is not held twice.
    pub fn release_inventory(&mut self) {
        self.networks = Vec::new();
        self.blocks = Vec::new();
        self.from_inventory = Inventory::default();
    }
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
    for (item, n) in e.all_networks(key) {
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
    for (item, b) in e.all_blocks(key) {
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

#[cfg(test)]
mod tests {
    use crate::config::{BackendSettings, ConfigError, Settings};

    const SECTION: &str = r#"
        [clients.demo]
        password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$0eDVEQ9XbOhdVpTvmUsnZdk1lBQ9hm0ONgDhkK6fwrY"
        backend = "local"
        [backends.local]
        kind = "embedded"
    "#;

    const INLINE: &str = r#"
        [[backends.local.networks]]
        name = "n1"
        cidr = "10.0.0.0/24"
        gateway = "10.0.0.1"
        dns_servers = ["10.0.0.53"]
        tags = { env = "lab" }
        [[backends.local.networks]]
        name = "n2"
        cidr = "10.0.1.0/24"
        vlan = 12
        range_start = "10.0.1.10"
        [[backends.local.blocks]]
        name = "b1"
        cidr = "10.8.0.0/16"
    "#;

    const JSON: &str = r#"{
        "networks": [
            {"name": "n1", "cidr": "10.0.0.0/24", "gateway": "10.0.0.1",
             "dns_servers": ["10.0.0.53"], "tags": {"env": "lab"}},
            {"name": "n2", "cidr": "10.0.1.0/24", "vlan": 12, "range_start": "10.0.1.10"}
        ],
        "blocks": [{"name": "b1", "cidr": "10.8.0.0/16"}]
    }"#;

    /// The inline lists as the TOML inventory file writes them (no `backends.local.` prefix).
    fn toml_file() -> String {
        INLINE
            .replace("[[backends.local.networks]]", "[[networks]]")
            .replace("[[backends.local.blocks]]", "[[blocks]]")
    }

    /// The config with `inventory` pointing at a file holding `content`, in `dir`.
    fn with_file(dir: &std::path::Path, name: &str, content: &str, extra: &str) -> String {
        let path = dir.join(name);
        std::fs::write(&path, content).expect("write inventory");
        format!(
            "{}{extra}",
            SECTION.replace(
                "kind = \"embedded\"",
                &format!("kind = \"embedded\"\ninventory = \"{}\"", path.display())
            )
        )
    }

    fn seeded(s: &Settings) -> String {
        match &s.backends[0] {
            BackendSettings::Embedded {
                networks, blocks, ..
            } => format!("{networks:?} {blocks:?}"),
            other => panic!("embedded expected, got {other:?}"),
        }
    }

    fn err(text: &str) -> ConfigError {
        Settings::from_toml(text).expect_err("config should be rejected")
    }

    #[test]
    fn an_inventory_file_in_json_or_toml_seeds_what_the_inline_lists_seed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inline = Settings::from_toml(&format!("{SECTION}{INLINE}")).expect("inline");
        for (name, content) in [("inv.json", JSON.to_owned()), ("inv.toml", toml_file())] {
            let s = Settings::from_toml(&with_file(dir.path(), name, &content, "")).expect(name);
            assert_eq!(seeded(&s), seeded(&inline), "{name}");
            // print-config shows the key, not the file's content.
            let printed = s.to_toml().expect("print-config");
            assert!(printed.contains(name), "{printed}");
            assert!(!printed.contains("10.0.1.0/24"), "{printed}");
        }
    }

    #[test]
    fn inline_lists_and_an_inventory_add_up_and_may_not_overlap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let more = r#"{"networks": [{"name": "n3", "cidr": "10.0.2.0/24", "dns": "lab"}]}"#;
        let dns = r#"
            [dns.lab]
            servers = ["127.0.0.1:5353"]
            key_name = "k"
            secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"
            forward_zones = ["lab.example.com"]
        "#;
        let text = with_file(dir.path(), "more.json", more, &format!("{INLINE}{dns}"));
        let s = Settings::from_toml(&text).expect("both");
        let BackendSettings::Embedded { networks, .. } = &s.backends[0] else {
            panic!("embedded expected");
        };
        let names: Vec<_> = networks.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["n1", "n2", "n3"]);
        // A file network's `dns` attaches as an inline one's does.
        assert_eq!(
            s.dns_attach["local"]
                .networks
                .get("default/10.0.2.0/24")
                .map(String::as_str),
            Some("lab")
        );
        let dangling = more.replace("\"dns\": \"lab\"", "\"dns\": \"nope\"");
        let e = err(&with_file(
            dir.path(),
            "d.json",
            &dangling,
            &format!("{INLINE}{dns}"),
        ));
        assert_eq!(e.key, "backends.local.inventory.networks[0].dns");
        let overlapping = more.replace("10.0.2.0/24", "10.0.0.128/25");
        let e = err(&with_file(dir.path(), "o.json", &overlapping, INLINE));
        assert_eq!(e.key, "backends.local.inventory.networks[0].cidr");
        assert!(e.why.contains("overlaps network 'n1'"), "{e}");
    }

    #[test]
    fn inventory_errors_name_the_key_the_file_and_the_element() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = err(&SECTION.replace(
            "kind = \"embedded\"",
            "kind = \"embedded\"\ninventory = \"/nonexistent/inv.json\"",
        ));
        assert_eq!(e.key, "backends.local.inventory");
        assert!(e.why.contains("/nonexistent/inv.json: cannot read"), "{e}");
        let cases = [
            (
                "t.json",
                JSON.replace("\"vlan\": 12", "\"vlan\": \"twelve\""),
                "networks[1].vlan",
            ),
            (
                "u.json",
                JSON.replace("\"vlan\": 12", "\"vlan_id\": 12"),
                "vlan_id",
            ),
            (
                "m.json",
                JSON.replace("\"name\": \"b1\", ", ""),
                "missing field `name`",
            ),
            (
                "s.json",
                JSON.replace("]\n    }", "]\n    } trailing"),
                "trailing",
            ),
            (
                "u.toml",
                toml_file().replace("vlan = 12", "vlan_id = 12"),
                "vlan_id",
            ),
            (
                "s.toml",
                toml_file().replace("vlan = 12", "vlan = 12 12"),
                "s.toml",
            ),
        ];
        for (name, content, why) in cases {
            let e = err(&with_file(dir.path(), name, &content, ""));
            assert_eq!(e.key, "backends.local.inventory", "{name}: {e}");
            assert!(e.why.contains(why), "{name}: {e}");
        }
        let bad = JSON.replace("10.0.1.0/24", "10.0.1.0/33");
        let e = err(&with_file(dir.path(), "c.json", &bad, ""));
        assert_eq!(e.key, "backends.local.inventory.networks[1].cidr");
        let bad = JSON.replace("10.8.0.0/16", "10.8.0.1/16");
        let e = err(&with_file(dir.path(), "b.json", &bad, ""));
        assert_eq!(e.key, "backends.local.inventory.blocks[0].cidr");
    }
}
