//! The endpoint form's gateway options (backend, address space, tag filter), checked against the
//! caller on every operation, and Validate Endpoint.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde_json::json;

use super::dto::endpoint;
use super::errors::{VraError, op};
use super::request::{VraResult, parse_body};
use crate::contracts::input::Field;
use crate::domain::{Block, IpamError, Network};
use crate::service::Caller;
use crate::state::AppState;

/// Which networks and blocks an endpoint sees: the endpoint form's `addressSpace` and
/// `tagFilter` (`key=value, key=value`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DiscoveryFilter {
    pub address_space: Option<String>,
    pub tags: BTreeMap<String, String>,
}

impl DiscoveryFilter {
    pub(super) fn matches_network(&self, n: &Network) -> bool {
        if let Some(space) = &self.address_space
            && &n.info.address_space != space
        {
            return false;
        }
        self.tags
            .iter()
            .all(|(k, v)| n.info.tags.iter().any(|t| &t.key == k && &t.value == v))
    }

    pub(super) fn matches_block(&self, b: &Block) -> bool {
        if let Some(space) = &self.address_space
            && &b.info.address_space != space
        {
            return false;
        }
        self.tags
            .iter()
            .all(|(k, v)| b.info.tags.iter().any(|t| &t.key == k && &t.value == v))
    }
}

/// The gateway options of the endpoint form (`endpointProperties`), checked against the caller.
/// A `backend` the form names must be the caller's own (it is checked, then the caller's is used).
#[derive(Debug, Clone, Default)]
pub(super) struct EndpointOptions {
    pub filter: DiscoveryFilter,
}

pub(super) fn endpoint_options(
    root: &Field<'_>,
    caller: &Caller,
) -> Result<EndpointOptions, IpamError> {
    let props = endpoint(root).get("endpointProperties");
    let backend = props.get("backend").opt_str()?;
    if let Some(b) = &backend
        && b != &caller.backend
    {
        return Err(IpamError::invalid(
            props.get("backend").path(),
            format!(
                "this endpoint names backend '{b}', but client '{}' is bound to backend '{}'",
                caller.name, caller.backend
            ),
        ));
    }
    let address_space = props.get("addressSpace").opt_str()?;
    let mut tags = BTreeMap::new();
    let tag_field = props.get("tagFilter");
    if let Some(text) = tag_field.opt_str()? {
        for part in text
            .split([',', ';'])
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                IpamError::invalid(
                    tag_field.path(),
                    format!("'{part}' is not key=value (e.g. env=lab, tier=servers)"),
                )
            })?;
            tags.insert(k.trim().to_owned(), v.trim().to_owned());
        }
    }
    Ok(EndpointOptions {
        filter: DiscoveryFilter {
            address_space,
            tags,
        },
    })
}

/// Validate Endpoint: the backend answers, its set-up is complete, and what the filter sees.
pub(super) async fn validate_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> VraResult {
    const OP: &str = "validate-endpoint";
    let body = parse_body(OP, &body)?;
    let root = Field::root(&body).map_err(op(OP))?;
    let options = endpoint_options(&root, &caller).map_err(op(OP))?;
    let status =
        state.ipam.check(&caller.backend).await.map_err(|e| {
            VraError::new(OP, e).with_context(format!("backend '{}'", caller.backend))
        })?;
    let mut detail = format!(
        "backend '{}' ({}) reachable, {} network(s), {} block(s)",
        status.backend, status.kind, status.networks, status.blocks
    );
    if !status.unchecked.is_empty() {
        detail.push_str(&format!("; not checked: {}", status.unchecked.join("; ")));
    }
    if options.filter != DiscoveryFilter::default() {
        let snapshot = state.ipam.network_snapshot(&caller).await.map_err(op(OP))?;
        let seen = snapshot
            .iter()
            .filter(|n| options.filter.matches_network(n))
            .count();
        detail.push_str(&format!("; {seen} network(s) match this endpoint's filter"));
    }
    tracing::info!(client = %caller.name, backend = %caller.backend, "vRA endpoint validated");
    Ok(Json(json!({
        "message": format!("Validated successfully: {detail}"),
        "statusCode": "200",
    })))
}
