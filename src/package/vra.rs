//! The vRA 8 / Aria Automation IPAM provider package: the zip imported under Infrastructure →
//! Integrations → IPAM → Manage IPAM Providers → Import Provider Package.
//!
//! Built without Maven or Docker: the actions are standard-library Python shims, so there are no
//! wheels to collect. Layout (flat, as the SDK's assembly produces it):
//!
//! ```text
//! <name>.zip: registration.yaml, endpoint-schema.json, logo.png, CHANGELOG.md, bundle.zip
//! bundle.zip: <op>.abx + <op>.zip for each of the eight operations
//! <op>.zip:   source.py (handler entry point) + ipamgw_vra.py (the shared shim)
//! ```

use std::io::{Cursor, Write};

use serde_json::json;
use zip::write::SimpleFileOptions;

use crate::contracts::vra::{OPERATIONS, Operation};

const HELPER: &str = include_str!("templates/vra/ipamgw_vra.py");
const SOURCE: &str = include_str!("templates/vra/source.py");
const ABX: &str = include_str!("templates/vra/action.abx");
const CHANGELOG: &str = include_str!("templates/vra/CHANGELOG.md");

/// File name of the shared shim module inside every action zip.
pub const HELPER_FILE: &str = "ipamgw_vra.py";

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("invalid {field}: {why}")]
    Invalid { field: &'static str, why: String },
    #[error("cannot write the package: {0}")]
    Write(String),
}

fn write_err(e: impl std::fmt::Display) -> PackageError {
    PackageError::Write(e.to_string())
}

/// What goes into a package.
#[derive(Debug, Clone)]
pub struct PackageOptions {
    /// Provider name: vRA's identity of the provider (renaming makes a new provider) and the
    /// prefix of every action id. Letters, digits, `-` and `_`; no spaces.
    pub name: String,
    pub version: String,
    pub description: String,
    /// Timeout of each shim call to the gateway, in seconds.
    pub timeout_secs: u32,
}

impl Default for PackageOptions {
    fn default() -> Self {
        PackageOptions {
            name: "IpamGateway".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "ipam-gateway: phpIPAM, Infoblox or embedded IPAM for vRA".into(),
            timeout_secs: 120,
        }
    }
}

impl PackageOptions {
    pub fn validate(&self) -> Result<(), PackageError> {
        let name_ok = self.name.len() <= 64
            && self
                .name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic())
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return Err(PackageError::Invalid {
                field: "name",
                why: format!(
                    "'{}' must start with a letter and hold only letters, digits, '-' and '_' \
                     (at most 64; vRA rejects spaces)",
                    self.name
                ),
            });
        }
        let version_ok = !self.version.is_empty()
            && self.version.len() <= 32
            && self
                .version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_'));
        if !version_ok {
            return Err(PackageError::Invalid {
                field: "version",
                why: format!(
                    "'{}' must be 1-32 characters of letters, digits, '.', '-', '+', '_'",
                    self.version
                ),
            });
        }
        if self.description.chars().any(char::is_control) || self.description.len() > 200 {
            return Err(PackageError::Invalid {
                field: "description",
                why: "must be one line of at most 200 bytes".into(),
            });
        }
        if !(5..=590).contains(&self.timeout_secs) {
            return Err(PackageError::Invalid {
                field: "timeout",
                why: format!(
                    "{}s: must be 5..590 (the actions themselves time out after 600s)",
                    self.timeout_secs
                ),
            });
        }
        Ok(())
    }

    /// `<name>_<suffix>`: the ABX action id of an operation.
    pub fn action_name(&self, op: &Operation) -> String {
        format!("{}_{}", self.name, op.action_suffix)
    }
}

/// Replaces `@KEY@` placeholders; fails on any left unreplaced (a template/code mismatch).
fn render(template: &str, values: &[(&str, &str)]) -> Result<String, PackageError> {
    let mut out = template.to_owned();
    for (key, value) in values {
        out = out.replace(&format!("@{key}@"), value);
    }
    let leftover = out.split('@').skip(1).step_by(2).find(|s| {
        !s.is_empty() && s.len() <= 32 && s.chars().all(|c| c.is_ascii_uppercase() || c == '_')
    });
    match leftover {
        Some(key) => Err(PackageError::Write(format!(
            "template placeholder @{key}@ has no value"
        ))),
        None => Ok(out),
    }
}

/// The shared shim module, as it goes into every action.
pub fn helper_module(opts: &PackageOptions) -> Result<String, PackageError> {
    render(
        HELPER,
        &[
            ("PROVIDER_NAME", &opts.name),
            ("PROVIDER_VERSION", &opts.version),
            ("TIMEOUT_SECONDS", &opts.timeout_secs.to_string()),
        ],
    )
}

/// `registration.yaml`: provider identity, the eight action ids, and what the provider supports.
pub fn registration_yaml(opts: &PackageOptions) -> String {
    // JSON strings are valid YAML double-quoted scalars.
    let q = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
    let mut y = String::from("---\n");
    y.push_str(&format!("name: {}\n", q(&opts.name)));
    y.push_str(&format!("description: {}\n", q(&opts.description)));
    y.push_str(&format!("version: {}\n\nabxConfig:\n", q(&opts.version)));
    for op in &OPERATIONS {
        y.push_str(&format!(
            "  {}: {}\n",
            op.registration_key,
            q(&opts.action_name(op))
        ));
    }
    y.push_str(
        "\nproperties:\n  supportsAddressSpaces: true\n  supportsUpdateRecord: true\n  \
         supportsOnDemandNetworks: true\n",
    );
    y
}

/// `endpoint-schema.json`: the integration form. `privateKeyId`/`privateKey` are required by
/// vRA (they go to its credential store); the rest are the gateway's options.
pub fn endpoint_schema(opts: &PackageOptions) -> serde_json::Value {
    let text = |id: &str| json!({"id": id, "display": "textField"});
    json!({
        "layout": {
            "pages": [{
                "id": opts.name,
                "title": format!("{} endpoint", opts.name),
                "sections": [
                    {"id": "section_gateway", "fields": [
                        text("hostName"),
                        text("privateKeyId"),
                        {"id": "privateKey", "display": "passwordField"},
                    ]},
                    {"id": "section_options", "fields": [
                        text("backend"),
                        text("addressSpace"),
                        text("tagFilter"),
                    ]},
                ],
            }],
        },
        "schema": {
            "hostName": {
                "type": {"dataType": "string"},
                "label": "Gateway host",
                "signpost": "Host name of ipam-gateway, with :port when it is not 443 (e.g. ipam-gw.example.com:8443). The gateway's certificate must name it.",
                "constraints": {"required": true},
            },
            "privateKeyId": {
                "type": {"dataType": "string"},
                "label": "Client name",
                "signpost": "A client from the gateway's [clients] config (or a backend user when the gateway runs in passthrough mode).",
                "constraints": {"required": true},
            },
            "privateKey": {
                "type": {"dataType": "secureString"},
                "label": "Password",
                "constraints": {"required": true},
            },
            "backend": {
                "type": {"dataType": "string"},
                "label": "Backend (optional)",
                "signpost": "The gateway backend this endpoint expects. Validation fails when the client is bound to another one.",
            },
            "addressSpace": {
                "type": {"dataType": "string"},
                "label": "Address space (optional)",
                "signpost": "Only list ranges and blocks of this address space (phpIPAM section / Infoblox network view).",
            },
            "tagFilter": {
                "type": {"dataType": "string"},
                "label": "Tag filter (optional)",
                "signpost": "Only list ranges and blocks carrying all these tags, e.g. env=lab, tier=servers.",
            },
        },
        "options": {},
    })
}

/// Zips named files into one archive (deflated, fixed timestamps: same input, same bytes).
fn zip_files(files: &[(String, Vec<u8>)]) -> Result<Vec<u8>, PackageError> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);
    for (name, bytes) in files {
        w.start_file(name.as_str(), options).map_err(write_err)?;
        w.write_all(bytes).map_err(write_err)?;
    }
    Ok(w.finish().map_err(write_err)?.into_inner())
}

/// The code zip of one action: `source.py` + the shared shim.
pub fn action_zip(opts: &PackageOptions, op: &Operation) -> Result<Vec<u8>, PackageError> {
    let action = opts.action_name(op);
    let source = render(
        SOURCE,
        &[
            ("ACTION_NAME", &action),
            ("OPERATION", op.path),
            ("PROVIDER_NAME", &opts.name),
        ],
    )?;
    zip_files(&[
        ("source.py".into(), source.into_bytes()),
        (HELPER_FILE.into(), helper_module(opts)?.into_bytes()),
    ])
}

/// `bundle.zip`: an `.abx` descriptor and a code zip per action.
pub fn bundle_zip(opts: &PackageOptions) -> Result<Vec<u8>, PackageError> {
    let mut files = Vec::new();
    for op in &OPERATIONS {
        let abx = render(ABX, &[("ACTION_NAME", &opts.action_name(op))])?;
        files.push((format!("{}.abx", op.file_stem), abx.into_bytes()));
        files.push((format!("{}.zip", op.file_stem), action_zip(opts, op)?));
    }
    zip_files(&files)
}

/// The whole provider package, ready to import into vRA.
pub fn build(opts: &PackageOptions) -> Result<Vec<u8>, PackageError> {
    opts.validate()?;
    let schema = serde_json::to_vec_pretty(&endpoint_schema(opts)).map_err(write_err)?;
    let changelog = render(
        CHANGELOG,
        &[
            ("PROVIDER_NAME", &opts.name),
            ("PROVIDER_VERSION", &opts.version),
            ("GATEWAY_VERSION", env!("CARGO_PKG_VERSION")),
        ],
    )?;
    zip_files(&[
        (
            "registration.yaml".into(),
            registration_yaml(opts).into_bytes(),
        ),
        ("endpoint-schema.json".into(), schema),
        ("logo.png".into(), super::png::logo()),
        ("CHANGELOG.md".into(), changelog.into_bytes()),
        ("bundle.zip".into(), bundle_zip(opts)?),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_spaces_and_bad_versions_are_refused() {
        let bad_name = PackageOptions {
            name: "My IPAM".into(),
            ..Default::default()
        };
        assert!(matches!(
            bad_name.validate(),
            Err(PackageError::Invalid { field: "name", .. })
        ));
        let bad_version = PackageOptions {
            version: "1.0 beta".into(),
            ..Default::default()
        };
        assert!(matches!(
            bad_version.validate(),
            Err(PackageError::Invalid {
                field: "version",
                ..
            })
        ));
        assert!(PackageOptions::default().validate().is_ok());
    }

    #[test]
    fn every_template_placeholder_is_filled() {
        let opts = PackageOptions::default();
        let helper = helper_module(&opts).expect("helper");
        assert!(helper.contains("TIMEOUT_SECONDS = 120"));
        assert!(helper.contains("PROVIDER = \"IpamGateway\""));
        for op in &OPERATIONS {
            action_zip(&opts, op).expect("action zip");
        }
        assert!(render("x @MISSING@ y", &[]).is_err());
        assert_eq!(
            render("a@b.c @K@", &[("K", "v")]).expect("email-like text is no placeholder"),
            "a@b.c v"
        );
    }

    #[test]
    fn registration_names_all_eight_actions() {
        let y = registration_yaml(&PackageOptions::default());
        for key in [
            "allocateIPActionId: \"IpamGateway_AllocateIP\"",
            "deallocateIPActionId: \"IpamGateway_DeallocateIP\"",
            "validateEndpointActionId: \"IpamGateway_ValidateEndpoint\"",
            "updateResourceActionId: \"IpamGateway_Update\"",
            "getIPRangesActionId: \"IpamGateway_GetIPRanges\"",
            "allocateNetworkActionId: \"IpamGateway_AllocateIPRange\"",
            "deallocateNetworkActionId: \"IpamGateway_DeallocateIPRange\"",
            "getIPBlocksActionId: \"IpamGateway_GetIPBlocks\"",
            "supportsOnDemandNetworks: true",
        ] {
            assert!(y.contains(key), "{key} missing in\n{y}");
        }
    }

    #[test]
    fn the_same_options_give_the_same_bytes() {
        let opts = PackageOptions::default();
        assert_eq!(build(&opts).expect("a"), build(&opts).expect("b"));
    }
}
