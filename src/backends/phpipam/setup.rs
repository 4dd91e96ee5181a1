//! The set-up check (`ipam-gateway check`, `GET /api/v1/backends`): the sections exist, the
//! custom fields the config names exist, and the API app may write (found with a write that
//! changes nothing).

use std::collections::HashSet;

use reqwest::Method;
use serde_json::{Value, json};

use super::PhpipamBackend;
use super::client::Reply;
use crate::backends::CallContext;
use crate::backends::common::SetupFindings;
use crate::domain::{BackendStatus, IpamResult};

/// phpIPAM's message of an answer, quoted, for "not checked" notes.
fn quoted<D>(reply: &Reply<D>) -> String {
    if reply.message().is_empty() {
        "(empty or non-JSON answer)".to_owned()
    } else {
        format!("'{}'", reply.message())
    }
}

/// The custom field definitions of one phpIPAM table, or why they could not be read.
enum CustomFields {
    Known(HashSet<String>),
    Unknown(String),
}

impl PhpipamBackend {
    /// `GET addresses/custom_fields/` or `GET subnets/custom_fields/` (fixtures 44, 43): the
    /// names (`custom_…`) of the table's custom fields. With none defined phpIPAM answers 404
    /// `No custom fields defined` (1.8.2 api/controllers/Addresses.php and Subnets.php).
    async fn custom_fields(&self, cx: &CallContext, controller: &str) -> IpamResult<CustomFields> {
        let reply = self
            .api
            .get(cx, &format!("{controller}/custom_fields/"), &[])
            .await?;
        if reply.status == 404 && reply.says("no custom fields defined") {
            return Ok(CustomFields::Known(HashSet::new()));
        }
        match (&reply.env.data, reply.ok()) {
            (Some(Value::Object(defs)), true) => {
                Ok(CustomFields::Known(defs.keys().cloned().collect()))
            }
            _ => Ok(CustomFields::Unknown(format!(
                "the {controller} custom fields: phpIPAM answered {} {} to GET \
                 {controller}/custom_fields/",
                reply.status,
                quoted(&reply)
            ))),
        }
    }

    /// Whether the API app may write, found without writing: `PATCH addresses/0/` with an empty
    /// body. phpIPAM 1.8.2 (api/index.php) refuses POST/PATCH/PUT/DELETE of an app with
    /// `app_permissions` < 2 with 401 `invalid permissions` (fixture 126) before it even picks
    /// the controller; past that check, the addresses controller looks the id up first and
    /// answers 404 `Address does not exist` (fixture 81) — ids start at 1, so nothing is ever
    /// written (and an empty PATCH changes nothing anyway, fixture 79).
    async fn probe_write_permission(
        &self,
        cx: &CallContext,
        found: &mut SetupFindings,
    ) -> IpamResult<()> {
        let reply = self
            .api
            .send(cx, Method::PATCH, "addresses/0/", &[], Some(&json!({})))
            .await?;
        if reply.status == 401 && reply.says("invalid permissions") {
            found.problems.push(format!(
                "the phpIPAM API app '{}' may only read (phpIPAM answers 401 'invalid \
                 permissions' to every write), so every allocation fails; give it 'Read / Write' \
                 permissions under phpIPAM → Administration → API (edit app '{}')",
                self.cfg.app_id, self.cfg.app_id
            ));
        } else if !(reply.status == 404 && reply.says("address does not exist")) {
            found.unchecked.push(format!(
                "whether the API app '{}' may write: phpIPAM answered {} {} to a write that \
                 changes nothing (PATCH addresses/0/)",
                self.cfg.app_id,
                reply.status,
                quoted(&reply)
            ));
        }
        Ok(())
    }

    /// The custom fields the config names exist, and the app may write.
    async fn setup_findings(&self, cx: &CallContext) -> IpamResult<SetupFindings> {
        let mut found = SetupFindings::default();
        let custom = |f: &str| f.starts_with("custom_");
        if custom(&self.cfg.owner_field) {
            match self.custom_fields(cx, "addresses").await? {
                CustomFields::Known(names) if !names.contains(&self.cfg.owner_field) => {
                    found.problems.push(format!(
                        "the IP address custom field '{f}' (owner_field) does not exist in \
                         phpIPAM (it answers 400 'Invalid request key {f}' to every allocation); \
                         create it under phpIPAM → Administration → Custom fields → IP \
                         addresses (name '{}': phpIPAM adds the custom_ prefix; type \
                         varchar({}), as long as an owner may be), or set owner_field to an \
                         existing field",
                        self.cfg.owner_field.trim_start_matches("custom_"),
                        crate::domain::OWNER_MAX_LEN,
                        f = self.cfg.owner_field
                    ));
                }
                CustomFields::Known(_) => {}
                CustomFields::Unknown(why) => found.unchecked.push(why),
            }
        }
        let selectors = [
            (
                "networks.field",
                self.cfg.networks.field.as_ref().map(|(f, _)| f),
            ),
            (
                "blocks.field",
                self.cfg.blocks.field.as_ref().map(|(f, _)| f),
            ),
        ];
        let optional = [
            ("dns_domain_field", self.cfg.dns_domain_field.as_ref()),
            (
                "search_domains_field",
                self.cfg.search_domains_field.as_ref(),
            ),
        ];
        let wanted = selectors
            .iter()
            .chain(optional.iter())
            .any(|(_, f)| f.is_some_and(|f| custom(f)));
        if wanted {
            match self.custom_fields(cx, "subnets").await? {
                CustomFields::Known(names) => {
                    for (key, f) in selectors {
                        if let Some(f) = f.filter(|f| custom(f) && !names.contains(*f)) {
                            found.problems.push(format!(
                                "the subnet custom field '{f}' ({key}) does not exist in phpIPAM, \
                                 so no subnet matches it; create it under phpIPAM → \
                                 Administration → Custom fields → Subnets (name '{}': phpIPAM \
                                 adds the custom_ prefix) and set it on the subnets to use",
                                f.trim_start_matches("custom_")
                            ));
                        }
                    }
                    for (key, f) in optional {
                        if let Some(f) = f.filter(|f| custom(f) && !names.contains(*f)) {
                            found.warnings.push(format!(
                                "subnet custom field '{f}' ({key}) does not exist in phpIPAM"
                            ));
                        }
                    }
                }
                CustomFields::Unknown(why) => found.unchecked.push(why),
            }
        }
        self.probe_write_permission(cx, &mut found).await?;
        Ok(found)
    }

    pub(super) async fn status(&self, cx: &CallContext) -> IpamResult<BackendStatus> {
        let inv = self.fresh_inventory(cx).await?;
        let mut detail = format!(
            "phpIPAM {} app '{}' (auth {})",
            self.api.base_url(),
            self.cfg.app_id,
            self.api.auth_mode()
        );
        if !inv.missing_sections.is_empty() {
            detail.push_str(&format!(
                "; WARNING: section(s) not found: {}",
                inv.missing_sections.join(", ")
            ));
        }
        let found = self.setup_findings(cx).await?;
        for w in &found.warnings {
            detail.push_str(&format!("; WARNING: {w}"));
        }
        Ok(BackendStatus {
            backend: self.name.clone(),
            kind: "phpipam",
            detail,
            networks: inv.networks.len(),
            blocks: inv.blocks.len(),
            problems: found.problems,
            unchecked: found.unchecked,
        })
    }
}
