//! How the gateway's records are named and marked: the owner marker (an extensible attribute or
//! a comment marker), the default comment, host names derived from an owner and made unique per
//! network, and DUIDs derived from MACs.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::InfobloxBackend;
use super::config::{OwnerMarker, RecordStyle};
use super::inventory::Net;
use crate::backends::common::{default_description, owner_marker};
use crate::domain::{IpamError, IpamResult, Mac, Owner};

/// A POSIX regular expression matching `text` literally.
pub(super) fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if "\\^$.|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Eight hex digits of the SHA-256 of an owner.
pub(super) fn owner_hash(owner: &Owner) -> String {
    // The precision is the number of hex digits `{:x}` writes.
    format!("{:.8x}", Sha256::digest(owner.as_str().as_bytes()))
}

/// `web-01.lab.example.com` → `web-01-1a2b3c4d.lab.example.com`: the first label gets a hash of
/// the owner and the network (one owner may hold addresses in several networks: dual stack).
pub(super) fn unique_name(name: &str, owner: &Owner, network: &str) -> String {
    let hash = format!(
        "{:.8x}",
        Sha256::digest(format!("{owner}\0{network}").as_bytes())
    );
    match name.split_once('.') {
        Some((first, rest)) => format!("{first}-{hash}.{rest}"),
        None => format!("{name}-{hash}"),
    }
}

/// A DUID-LL (type 3, hardware type 1) from a MAC: what DHCPv6 clients derive from an Ethernet
/// address.
pub(super) fn duid_from_mac(mac: &Mac) -> String {
    format!("00:03:00:01:{}", mac.as_str())
}

impl InfobloxBackend {
    /// The owner marker as extensible attributes, merged into `extra`.
    pub(super) fn owner_eas(
        &self,
        owner: &Owner,
        mut extra: Map<String, Value>,
    ) -> Map<String, Value> {
        if self.cfg.owner_marker == OwnerMarker::Ea {
            extra.insert(self.cfg.owner_ea.clone(), json!({"value": owner.as_str()}));
        }
        extra
    }

    pub(super) fn comment(&self, owner: &Owner, description: Option<&str>) -> String {
        let text = description
            .map(str::to_owned)
            .unwrap_or_else(|| default_description(owner));
        match self.cfg.owner_marker {
            OwnerMarker::Ea => text,
            OwnerMarker::Comment => format!("{} {}", text.trim(), owner_marker(owner))
                .trim()
                .to_owned(),
        }
    }

    /// The record name: the hostname (completed with the network's `domain-name` when DNS needs
    /// an FQDN), or one derived from the owner.
    pub(super) fn record_name(
        &self,
        net: &Net,
        owner: &Owner,
        hostname: Option<&str>,
    ) -> IpamResult<String> {
        let given = hostname
            .map(|h| h.trim().trim_end_matches('.'))
            .filter(|h| !h.is_empty());
        let base = match given {
            Some(h) => h.to_owned(),
            None => {
                let mut s: String = owner
                    .as_str()
                    .to_ascii_lowercase()
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                    .collect();
                while s.contains("--") {
                    s = s.replace("--", "-");
                }
                let s: String = s.trim_matches('-').chars().take(40).collect();
                format!("ipamgw-{}-{}", s.trim_matches('-'), owner_hash(owner))
            }
        };
        let dns = self.cfg.record_style == RecordStyle::APtr
            || (self.cfg.record_style == RecordStyle::Host && self.cfg.configure_for_dns);
        if !dns || base.contains('.') {
            return Ok(base);
        }
        match net.dns_domain.clone() {
            Some(d) => Ok(format!("{base}.{d}")),
            None if self.cfg.record_style == RecordStyle::APtr => Err(IpamError::invalid(
                "hostname",
                format!(
                    "'{base}' is not fully qualified and network {} has no domain-name option; \
                     A records need an FQDN",
                    net.cidr
                ),
            )),
            None => Ok(base),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::common::split_owner;

    #[test]
    fn owner_markers_and_regexes() {
        let (text, owner) = split_owner("web [ipamgw-owner:vra:a.b/nic0]");
        assert_eq!(text, "web");
        assert_eq!(owner.map(String::from).as_deref(), Some("vra:a.b/nic0"));
        assert_eq!(regex_escape("[x:a.b]"), "\\[x:a\\.b\\]");
        let mac = Mac::parse("00:50:56:aa:bb:cc").expect("mac");
        assert_eq!(duid_from_mac(&mac), "00:03:00:01:00:50:56:aa:bb:cc");
        let o = Owner::parse("vra:1/nic1").expect("owner");
        let u = unique_name("web-01.lab.example.com", &o, "default/10.0.0.0/24");
        assert!(
            u.starts_with("web-01-") && u.ends_with(".lab.example.com"),
            "{u}"
        );
        // Names and carved networks already in grids carry these digests (checked with Python's
        // hashlib): `{:x}` writes what the hand-written hex loop wrote.
        assert_eq!(u, "web-01-8f9efb7b.lab.example.com");
        assert_eq!(owner_hash(&o), "4dab76f6");
        assert_ne!(
            unique_name("web-01", &o, "default/10.0.0.0/24"),
            unique_name("web-01", &o, "default/2001:db8::/64")
        );
    }
}
