//! Test helpers the unit tests of several service modules share: a caller of backend `b`, an
//! allocation request for network `net`, an address.

use std::net::IpAddr;

use super::{AllocationRequest, Caller};
use crate::backends::CallContext;
use crate::domain::{NetworkId, Owner, RecordDetails};

pub(super) fn caller() -> Caller {
    Caller {
        name: "test".into(),
        backend: "b".into(),
        cx: CallContext::default(),
    }
}

pub(super) fn wanted(owner: &str, address: Option<&str>) -> AllocationRequest {
    AllocationRequest {
        owner: Owner::parse(owner).expect("owner"),
        networks: vec![NetworkId::new("b", "net")],
        address: address.map(|a| a.parse().expect("address")),
        details: RecordDetails::default(),
        aliases: Vec::new(),
    }
}

pub(super) fn ip(text: &str) -> IpAddr {
    text.parse().expect("ip")
}
