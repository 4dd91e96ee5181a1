//! The set-up check (`ipam-gateway check`, `GET /api/v1/backends`): the network views exist,
//! every extensible attribute the config names is defined on the grid, and what a read cannot
//! show is said to be unchecked. Nothing is written.

use serde_json::Value;

use super::InfobloxBackend;
use super::config::OwnerMarker;
use crate::backends::CallContext;
use crate::backends::common::SetupFindings;
use crate::domain::{BackendStatus, IpamResult};

impl InfobloxBackend {
    /// Whether extensible attribute `name` is defined on the grid: `GET
    /// extensibleattributedef?name=<name>&_return_fields=name,type` answers `[]` when it is not,
    /// else `[{"_ref": "extensibleattributedef/…:<name>", "name": "<name>", "type": "STRING"}]`
    /// (object `extensibleattributedef`, searchable by `name`: W1 infoblox-client
    /// `objects.py` `EADefinition`; fixtures 31, 32). `Err(why)` when the grid would not say.
    async fn ea_defined(&self, cx: &CallContext, name: &str) -> IpamResult<Result<bool, String>> {
        let query = [
            ("name".to_owned(), name.to_owned()),
            ("_return_fields".to_owned(), "name,type".to_owned()),
        ];
        let reply = self.api.get(cx, "extensibleattributedef", &query).await?;
        if !reply.ok() {
            return Ok(Err(format!(
                "the grid answered {} to GET extensibleattributedef: {}",
                reply.status,
                reply.detail()
            )));
        }
        match &reply.body {
            Value::Array(defs) => Ok(Ok(defs
                .iter()
                .any(|d| d.get("name").and_then(Value::as_str) == Some(name)))),
            other => Ok(Err(format!(
                "the grid answered GET extensibleattributedef with {} instead of a list",
                if other.is_null() {
                    "no JSON"
                } else {
                    "an object"
                }
            ))),
        }
    }

    /// Every extensible attribute the config names is defined on the grid. The grid answers 400
    /// `Unknown extensible attribute: <name>` to any search or write that uses an undefined one
    /// (fixture 26; contract §4 and §6, W4): the owner EA on every allocation, the filters on
    /// every listing. `vlan_ea` and `gateway_ea` are only read, so a missing one is a warning.
    async fn setup_findings(&self, cx: &CallContext) -> IpamResult<SetupFindings> {
        const CREATE: &str = "create it under Grid → Administration → Extensible Attributes";
        let mut wanted: Vec<(&str, String, bool)> = Vec::new();
        if self.cfg.owner_marker == OwnerMarker::Ea {
            wanted.push((
                self.cfg.owner_ea.as_str(),
                format!(
                    "so every allocation fails; {CREATE} (type String), or set owner_ea to an \
                     existing one"
                ),
                true,
            ));
        }
        for (k, _) in &self.cfg.network_filter {
            wanted.push((
                k.as_str(),
                format!(
                    "so no network can be listed; {CREATE} and set it on the networks to expose"
                ),
                true,
            ));
        }
        for (k, _) in &self.cfg.block_filter {
            wanted.push((
                k.as_str(),
                format!("so no block can be found; {CREATE} and set it on the network containers to use as blocks"),
                true,
            ));
        }
        wanted.push((
            self.cfg.gateway_ea.as_str(),
            "IPv6 networks get no gateway from it".to_owned(),
            false,
        ));
        wanted.push((
            self.cfg.vlan_ea.as_str(),
            "networks get no VLAN from it".to_owned(),
            false,
        ));
        let key = |name: &str| {
            if self.cfg.owner_marker == OwnerMarker::Ea && name == self.cfg.owner_ea {
                "owner_ea"
            } else if self.cfg.network_filter.iter().any(|(k, _)| k == name) {
                "network_filter"
            } else if self.cfg.block_filter.iter().any(|(k, _)| k == name) {
                "block_filter"
            } else if name == self.cfg.gateway_ea {
                "gateway_ea"
            } else {
                "vlan_ea"
            }
        };
        let mut found = SetupFindings::default();
        // One search per distinct name; the first (most needed) use of a name is reported.
        let mut asked: Vec<&str> = Vec::new();
        for (name, consequence, needed) in &wanted {
            if asked.contains(name) {
                continue;
            }
            asked.push(name);
            match self.ea_defined(cx, name).await? {
                Ok(true) => {}
                Ok(false) if *needed => found.problems.push(format!(
                    "the extensible attribute '{name}' ({}) is not defined on the grid (it \
                     answers 400 'Unknown extensible attribute: {name}' to every search and \
                     write that uses it), {consequence}",
                    key(name)
                )),
                Ok(false) => found.warnings.push(format!(
                    "extensible attribute '{name}' ({}) is not defined on the grid: {consequence}",
                    key(name)
                )),
                Err(why) => found.unchecked.push(format!(
                    "whether the extensible attribute '{name}' ({}) is defined: {why}",
                    key(name)
                )),
            }
        }
        found.unchecked.push(
            "whether the grid user may create records in the exposed networks (only a write \
             shows it)"
                .to_owned(),
        );
        Ok(found)
    }

    pub(super) async fn status(&self, cx: &CallContext) -> IpamResult<BackendStatus> {
        let views = self.api.get_all(cx, "networkview", &[], "name").await?;
        let known: Vec<String> = views
            .iter()
            .filter_map(|v| v.get("name").and_then(Value::as_str).map(str::to_owned))
            .collect();
        let missing: Vec<&str> = self
            .cfg
            .network_views
            .iter()
            .filter(|v| !known.contains(v))
            .map(String::as_str)
            .collect();
        let found = self.setup_findings(cx).await?;
        let inv = match self.fresh_inventory(cx).await {
            Ok(inv) => Some(inv),
            // An undefined filter EA fails the listing too; the problems already say why.
            Err(e) if !found.problems.is_empty() => {
                tracing::debug!(backend = %self.name, error = %e, "listing failed during check");
                None
            }
            Err(e) => return Err(e),
        };
        let mut detail = format!(
            "Infoblox {} WAPI v{} (auth {}), network views {}, record style {}",
            self.api.base_url(),
            self.cfg.wapi_version,
            self.api.auth_mode(),
            self.cfg.network_views.join(", "),
            self.cfg.record_style.as_str()
        );
        if !missing.is_empty() {
            detail.push_str(&format!(
                "; WARNING: network view(s) not found: {}",
                missing.join(", ")
            ));
        }
        for w in &found.warnings {
            detail.push_str(&format!("; WARNING: {w}"));
        }
        Ok(BackendStatus {
            backend: self.name.clone(),
            kind: "infoblox",
            detail,
            networks: inv.as_ref().map_or(0, |i| i.networks.len()),
            blocks: inv.as_ref().map_or(0, |i| i.blocks.len()),
            problems: found.problems,
            unchecked: found.unchecked,
        })
    }
}
