//! The native API: small JSON endpoints under `/api/v1/` that exercise the whole core without a
//! vendor contract. Documented in the README.

use std::collections::BTreeMap;
use std::net::IpAddr;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::domain::{
    Allocation, AllocationId, Family, IpamError, Lookup, Mac, Network, NetworkFilter, NetworkId,
    Owner, RecordChanges, RecordDetails,
};
use crate::server::AppState;
use crate::service::{AllocationRequest, Caller};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/networks", get(list_networks).post(create_network))
        .route(
            "/api/v1/networks/{id}",
            get(get_network).delete(delete_network),
        )
        .route("/api/v1/blocks", get(list_blocks))
        .route(
            "/api/v1/allocations",
            get(find_allocations)
                .post(create_allocation)
                .delete(release_by_owner),
        )
        .route(
            "/api/v1/allocations/batch",
            axum::routing::post(create_batch),
        )
        .route(
            "/api/v1/allocations/{id}",
            get(get_allocation)
                .patch(update_allocation)
                .delete(release_allocation),
        )
}

/// The native API's error envelope: `{"error": {"code", "message", "field"?}}`.
#[derive(Debug)]
pub struct ApiError(pub IpamError);

impl From<IpamError> for ApiError {
    fn from(e: IpamError) -> Self {
        ApiError(e)
    }
}

pub fn status_of(e: &IpamError) -> StatusCode {
    match e {
        IpamError::InvalidInput { .. } => StatusCode::BAD_REQUEST,
        IpamError::NotFound(_) => StatusCode::NOT_FOUND,
        IpamError::Exhausted(_) | IpamError::Conflict(_) => StatusCode::CONFLICT,
        IpamError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
        // The backend refused the gateway's own credentials: a gateway-side problem, not the caller's.
        // An answer the gateway cannot read is the backend's fault too.
        IpamError::Unauthorized(_)
        | IpamError::Upstream { .. }
        | IpamError::Undecodable { .. }
        | IpamError::NotSetUp { .. } => StatusCode::BAD_GATEWAY,
        IpamError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        IpamError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        IpamError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(&self.0);
        if status.is_server_error() {
            tracing::warn!(error = %self.0, "request failed");
        }
        let mut body = json!({"code": self.0.code(), "message": self.0.to_string()});
        if let IpamError::InvalidInput { field, .. } = &self.0 {
            body["field"] = json!(field);
        }
        (status, Json(json!({ "error": body }))).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Parses a JSON body, naming the offending field on error (`networks[1]`, `owner`, …).
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, IpamError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(IpamError::invalid("body", "a JSON object is required"));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.to_string();
        let whole_body = path == "." || path == "?" || inner.is_syntax() || inner.is_eof();
        // serde reports a missing field at its parent; name the field itself.
        let field = match msg
            .strip_prefix("missing field `")
            .and_then(|r| r.split_once('`'))
        {
            Some((name, _)) if path == "." => name.to_owned(),
            Some((name, _)) => format!("{path}.{name}"),
            None if whole_body => "body".to_owned(),
            None => path,
        };
        let why = msg
            .split(" at line ")
            .next()
            .unwrap_or(msg.as_str())
            .to_owned();
        IpamError::invalid(field, why)
    })
}

fn parse_network_id(field: &str, text: &str) -> Result<NetworkId, IpamError> {
    NetworkId::parse(text).ok_or_else(|| {
        IpamError::invalid(
            field,
            format!("'{text}' is not a network id from this gateway"),
        )
    })
}

fn parse_owner(field: &str, text: &str) -> Result<Owner, IpamError> {
    Owner::parse(text).map_err(|why| IpamError::invalid(field, why))
}

fn parse_mac(field: &str, text: &str) -> Result<Mac, IpamError> {
    Mac::parse(text).map_err(|why| IpamError::invalid(field, why))
}

fn parse_ip(field: &str, text: &str) -> Result<IpAddr, IpamError> {
    text.trim()
        .parse()
        .map_err(|_| IpamError::invalid(field, format!("'{text}' is not an IP address")))
}

fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn list_networks(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let mut filter = NetworkFilter::default();
    for (k, v) in query_pairs(raw.as_deref()) {
        match k.as_str() {
            "family" => {
                filter.family = Some(Family::parse(&v).ok_or_else(|| {
                    IpamError::invalid("family", format!("'{v}' is not ipv4 or ipv6"))
                })?)
            }
            "address_space" => filter.address_space = Some(v),
            "tag" => {
                let (key, value) = v
                    .split_once('=')
                    .ok_or_else(|| IpamError::invalid("tag", format!("'{v}' is not key=value")))?;
                filter.tags.insert(key.to_owned(), value.to_owned());
            }
            other => {
                return Err(IpamError::invalid(
                    other,
                    "unknown filter (use family, address_space, tag)",
                )
                .into());
            }
        }
    }
    // Serialised straight from the cached snapshot: no clone of the networks, no JSON tree.
    let all = state.ipam.network_snapshot(&caller).await?;
    let networks: Vec<&Network> = all.iter().filter(|n| filter.matches(&n.info)).collect();
    Ok(Json(NetworkList { networks }).into_response())
}

#[derive(Serialize)]
struct NetworkList<'a> {
    networks: Vec<&'a Network>,
}

async fn get_network(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = parse_network_id("id", &id)?;
    Ok(Json(state.ipam.network(&caller, &id).await?).into_response())
}

async fn list_blocks(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Response> {
    Ok(Json(json!({ "blocks": state.ipam.blocks(&caller).await? })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateNetwork {
    block: String,
    prefix_len: u8,
    owner: String,
    name: Option<String>,
    subnet: Option<String>,
}

async fn create_network(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: CreateNetwork = parse_json(&body)?;
    let block = parse_network_id("block", &req.block)?;
    let owner = parse_owner("owner", &req.owner)?;
    let subnet = req
        .subnet
        .as_deref()
        .map(|s| {
            let net = s
                .parse::<ipnet::IpNet>()
                .map_err(|_| IpamError::invalid("subnet", format!("'{s}' is not a CIDR")))?;
            if net != net.trunc() {
                return Err(IpamError::invalid(
                    "subnet",
                    format!("'{s}' has host bits set; did you mean {}?", net.trunc()),
                ));
            }
            Ok(net)
        })
        .transpose()?;
    let net = state
        .ipam
        .allocate_network(&caller, &block, req.prefix_len, &owner, req.name, subnet)
        .await?;
    Ok((StatusCode::CREATED, Json(net)).into_response())
}

async fn delete_network(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = parse_network_id("id", &id)?;
    state.ipam.release_network(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateAllocation {
    owner: String,
    networks: Vec<String>,
    address: Option<String>,
    hostname: Option<String>,
    description: Option<String>,
    mac: Option<String>,
}

impl CreateAllocation {
    fn into_request(self, prefix: &str) -> Result<AllocationRequest, IpamError> {
        let f = |name: &str| format!("{prefix}{name}");
        let networks = self
            .networks
            .iter()
            .enumerate()
            .map(|(i, n)| parse_network_id(&f(&format!("networks[{i}]")), n))
            .collect::<Result<Vec<_>, _>>()?;
        if networks.is_empty() {
            return Err(IpamError::invalid(
                f("networks"),
                "at least one network id is required",
            ));
        }
        Ok(AllocationRequest {
            owner: parse_owner(&f("owner"), &self.owner)?,
            networks,
            address: self
                .address
                .as_deref()
                .map(|a| parse_ip(&f("address"), a))
                .transpose()?,
            details: RecordDetails {
                hostname: self.hostname,
                description: self.description,
                mac: self
                    .mac
                    .as_deref()
                    .map(|m| parse_mac(&f("mac"), m))
                    .transpose()?,
            },
            aliases: Vec::new(),
        })
    }
}

async fn create_allocation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Response> {
    let req = parse_json::<CreateAllocation>(&body)?.into_request("")?;
    let a = state.ipam.allocate(&caller, &req).await?;
    Ok((StatusCode::CREATED, Json(a)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBatch {
    allocations: Vec<CreateAllocation>,
}

/// All or nothing: on failure everything taken is released again, and the error names the item.
async fn create_batch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Response> {
    let batch: CreateBatch = parse_json(&body)?;
    let reqs = batch
        .allocations
        .into_iter()
        .enumerate()
        .map(|(i, a)| a.into_request(&format!("allocations[{i}].")))
        .collect::<Result<Vec<_>, _>>()?;
    match state.ipam.allocate_batch(&caller, &reqs).await {
        Ok(done) => Ok((StatusCode::CREATED, Json(json!({ "allocations": done }))).into_response()),
        Err(f) => {
            let status = status_of(&f.error);
            let body = json!({"error": {
                "code": f.error.code(),
                "message": format!("allocation {} failed, earlier ones were rolled back: {}", f.index, f.error),
                "index": f.index,
                "rollback_failures": f.rollback_failures,
            }});
            Ok((status, Json(body)).into_response())
        }
    }
}

async fn find_allocations(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<FoundAllocations>> {
    let pairs: BTreeMap<String, String> = query_pairs(raw.as_deref()).into_iter().collect();
    let lookup = match (pairs.get("owner"), pairs.get("address")) {
        (Some(o), None) => Lookup::Owner(parse_owner("owner", o)?),
        (None, Some(a)) => Lookup::Address {
            address: parse_ip("address", a)?,
            network: pairs
                .get("network")
                .map(|n| parse_network_id("network", n))
                .transpose()?
                .map(|n| n.backend_id()),
        },
        _ => {
            return Err(IpamError::invalid(
                "owner",
                "give exactly one of owner=… or address=… (optionally with network=…)",
            )
            .into());
        }
    };
    let allocations = state.ipam.find(&caller, &lookup).await?;
    Ok(Json(FoundAllocations { allocations }))
}

#[derive(Serialize)]
struct FoundAllocations {
    allocations: Vec<Allocation>,
}

fn parse_allocation_id(text: &str) -> Result<(NetworkId, IpAddr), IpamError> {
    AllocationId::decode(text)
        .ok_or_else(|| IpamError::invalid("id", format!("'{text}' is not an allocation id")))
}

async fn get_allocation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Allocation>> {
    let (net, addr) = parse_allocation_id(&id)?;
    Ok(Json(state.ipam.get(&caller, &net, addr).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateAllocation {
    hostname: Option<String>,
    description: Option<String>,
    mac: Option<String>,
}

async fn update_allocation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Allocation>> {
    let (net, addr) = parse_allocation_id(&id)?;
    let req: UpdateAllocation = parse_json(&body)?;
    let changes = RecordChanges {
        hostname: req.hostname,
        description: req.description,
        mac: req
            .mac
            .as_deref()
            .map(|m| parse_mac("mac", m))
            .transpose()?,
    };
    if changes == RecordChanges::default() {
        return Err(
            IpamError::invalid("body", "nothing to change (hostname, description, mac)").into(),
        );
    }
    Ok(Json(
        state.ipam.update(&caller, &net, addr, &changes).await?,
    ))
}

async fn release_allocation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let (net, addr) = parse_allocation_id(&id)?;
    state.ipam.release(&caller, &net, addr).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn release_by_owner(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<serde_json::Value>> {
    let pairs: BTreeMap<String, String> = query_pairs(raw.as_deref()).into_iter().collect();
    let owner = pairs
        .get("owner")
        .ok_or_else(|| IpamError::invalid("owner", "DELETE /api/v1/allocations needs ?owner=…"))?;
    let released = state
        .ipam
        .release_owner(&caller, &parse_owner("owner", owner)?)
        .await?;
    Ok(Json(json!({ "released": released })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Probe {
        owner: String,
        networks: Vec<String>,
    }

    #[test]
    fn json_errors_name_the_field() {
        let e = parse_json::<Probe>(br#"{"networks": []}"#).expect_err("missing");
        assert!(
            matches!(e, IpamError::InvalidInput { ref field, .. } if field == "owner"),
            "{e}"
        );
        let e = parse_json::<Probe>(br#"{"owner": "x", "networks": [1]}"#).expect_err("type");
        assert!(
            matches!(e, IpamError::InvalidInput { ref field, .. } if field == "networks[0]"),
            "{e}"
        );
        let e = parse_json::<Probe>(br#"{"owner": "x""#).expect_err("truncated");
        assert!(
            matches!(e, IpamError::InvalidInput { ref field, .. } if field == "body"),
            "{e}"
        );
        let e = parse_json::<Probe>(b"").expect_err("empty");
        assert!(
            matches!(e, IpamError::InvalidInput { ref field, .. } if field == "body"),
            "{e}"
        );
    }

    /// What a backend's unreadable answer (`bad_data`, a 200 that is not JSON) looks like to a
    /// native API caller: 502 as when it posed as `Upstream { status: 200 }`, the same code, and
    /// a message that says the answer could not be read instead of "answered 200".
    #[tokio::test]
    async fn an_unreadable_backend_answer_is_a_502_that_says_so() {
        let e = IpamError::Undecodable {
            backend: "ipam".into(),
            detail: "unexpected section list: invalid type".into(),
        };
        assert_eq!(status_of(&e), StatusCode::BAD_GATEWAY);
        assert_eq!(e.code(), "upstream");
        let response = ApiError(e).into_response();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(body["error"]["code"], "upstream");
        assert_eq!(
            body["error"]["message"],
            "backend ipam answered with something the gateway cannot read: \
             unexpected section list: invalid type"
        );
        assert!(body["error"].get("field").is_none(), "{body}");
    }
}
