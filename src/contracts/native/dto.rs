//! The native API's request and answer shapes, and the parsers of its path and query values.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::contracts::input;
use crate::domain::{Allocation, AllocationId, IpamError, Network, NetworkId, RecordDetails};
use crate::service::AllocationRequest;

pub(super) fn parse_network_id(field: &str, text: &str) -> Result<NetworkId, IpamError> {
    NetworkId::parse(text).ok_or_else(|| {
        IpamError::invalid(
            field,
            format!("'{text}' is not a network id from this gateway"),
        )
    })
}

pub(super) fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[derive(Serialize)]
pub(super) struct NetworkList<'a> {
    pub(super) networks: Vec<&'a Network>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateNetwork {
    pub(super) block: String,
    pub(super) prefix_len: u8,
    pub(super) owner: String,
    pub(super) name: Option<String>,
    pub(super) subnet: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateAllocation {
    pub(super) owner: String,
    pub(super) networks: Vec<String>,
    pub(super) address: Option<String>,
    pub(super) hostname: Option<String>,
    pub(super) description: Option<String>,
    pub(super) mac: Option<String>,
}

impl CreateAllocation {
    pub(super) fn into_request(self, prefix: &str) -> Result<AllocationRequest, IpamError> {
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
            owner: input::owner(&f("owner"), &self.owner)?,
            networks,
            address: self
                .address
                .as_deref()
                .map(|a| input::ip(&f("address"), a))
                .transpose()?,
            details: RecordDetails {
                aliases: Vec::new(),
                hostname: self.hostname,
                description: self.description,
                mac: self
                    .mac
                    .as_deref()
                    .map(|m| input::mac(&f("mac"), m))
                    .transpose()?,
            },
            aliases: Vec::new(),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateBatch {
    pub(super) allocations: Vec<CreateAllocation>,
}

#[derive(Serialize)]
pub(super) struct FoundAllocations {
    pub(super) allocations: Vec<Allocation>,
}

pub(super) fn parse_allocation_id(text: &str) -> Result<(NetworkId, IpAddr), IpamError> {
    AllocationId::decode(text)
        .ok_or_else(|| IpamError::invalid("id", format!("'{text}' is not an allocation id")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateAllocation {
    pub(super) hostname: Option<String>,
    pub(super) description: Option<String>,
    pub(super) mac: Option<String>,
}
