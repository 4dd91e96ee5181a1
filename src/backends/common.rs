//! What the two HTTP backends (phpIPAM, Infoblox) did the same way, once: the owner marker kept
//! in a description or comment (`[ipamgw-owner:<owner>]`), the default description of an
//! address, splitting a list option or field, the checks of a specific address and of a subnet
//! asked for in a block, the name of a carved network, the set-up findings, and the errors both
//! answer with the same words.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::domain::{CarveRequest, IpamError, IpamResult, Owner};

/// Start of the owner marker in a description or comment (phpIPAM subnets, Infoblox comments
/// with `owner_marker = "comment"` and carved networks).
pub(super) const OWNER_MARK: &str = "[ipamgw-owner:";

/// `[ipamgw-owner:<owner>]`: what [`split_owner`] finds again.
pub(super) fn owner_marker(owner: &Owner) -> String {
    format!("{OWNER_MARK}{owner}]")
}

/// Splits `"web servers [ipamgw-owner:vra:123/nic0]"` into text and owner. The last marker
/// counts, and only when it ends the text; an owner that does not parse is none.
pub(super) fn split_owner(text: &str) -> (String, Option<Owner>) {
    if let Some(at) = text.rfind(OWNER_MARK)
        && let Some(inner) = text[at + OWNER_MARK.len()..].strip_suffix(']')
    {
        return (text[..at].trim().to_owned(), Owner::parse(inner).ok());
    }
    (text.trim().to_owned(), None)
}

/// The description of an address written without one.
pub(super) fn default_description(owner: &Owner) -> String {
    format!("ipam-gateway: {owner}")
}

/// A list separated by commas, semicolons or spaces; each item trimmed of whitespace, then of
/// the `strip` characters (Infoblox quotes DHCP option values), empty items dropped.
pub(super) fn split_list(text: &str, strip: &[char]) -> Vec<String> {
    text.split([',', ';', ' '])
        .map(|s| s.trim().trim_matches(strip))
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A specific address asked for: inside `cidr`, and inside the range the IPAM hands out
/// (`range`: first and last address), else a 400 naming `address`.
pub(super) fn check_specific(
    address: IpAddr,
    cidr: &IpNet,
    (lo, hi): (IpAddr, IpAddr),
) -> IpamResult<()> {
    if !cidr.contains(&address) {
        return Err(IpamError::invalid(
            "address",
            format!("{address} is not in network {cidr}"),
        ));
    }
    if address < lo || address > hi {
        return Err(IpamError::invalid(
            "address",
            format!("{address} is the network or broadcast address of {cidr}"),
        ));
    }
    Ok(())
}

/// The subnet a carve request names (host bits cleared): a `/prefix_len` inside `block`, else a
/// 400 naming `subnet`.
pub(super) fn subnet_in_block(block: &IpNet, subnet: IpNet, prefix_len: u8) -> IpamResult<IpNet> {
    let net = subnet.trunc();
    if !block.contains(&net) || net.prefix_len() != prefix_len {
        return Err(IpamError::invalid(
            "subnet",
            format!("{net} is not a /{prefix_len} inside block {block}"),
        ));
    }
    Ok(net)
}

/// The name of a carved network: the one asked for, or `on-demand network` (untrimmed; callers
/// trim it where they write it).
pub(super) fn carved_name(req: &CarveRequest) -> String {
    req.name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| "on-demand network".to_owned())
}

/// What a backend's set-up check finds, without changing data: problems (the backend cannot
/// work), warnings (it works with less) and what a read cannot show.
#[derive(Debug, Default)]
pub(super) struct SetupFindings {
    pub(super) problems: Vec<String>,
    pub(super) warnings: Vec<String>,
    pub(super) unchecked: Vec<String>,
}

/// An answer of the IPAM the gateway cannot read.
pub(super) fn undecodable(backend: &str, what: &str, e: impl fmt::Display) -> IpamError {
    IpamError::Undecodable {
        backend: backend.to_owned(),
        detail: format!("unexpected {what}: {e}"),
    }
}

/// A network id the backend does not expose, even after reading its inventory again.
pub(super) fn not_exposed(network: &str, backend: &str) -> IpamError {
    IpamError::NotFound(format!(
        "network {network} is not exposed by backend {backend}"
    ))
}

/// No record of the gateway's holds `address` in `network`.
pub(super) fn not_allocated(address: IpAddr, network: &str) -> IpamError {
    IpamError::NotFound(format!("{address} is not allocated in network {network}"))
}

/// Release of a network that was not carved from a block (`ipam` names where to delete it).
pub(super) fn not_carved(network: &str, ipam: &str) -> IpamError {
    IpamError::Conflict(format!(
        "network {network} was not carved from a block; delete it in {ipam}"
    ))
}

/// Release of a carved network that still holds addresses (its gateway not counted).
pub(super) fn still_holds(network: &str, held: usize) -> IpamError {
    IpamError::Conflict(format!(
        "network {network} still holds {held} allocated address(es); release them first"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(text: &str) -> Owner {
        Owner::parse(text).expect("owner")
    }

    #[test]
    fn owners_round_trip_through_descriptions() {
        let (name, owner) = split_owner("web tier [ipamgw-owner:vra:abc]/nic0]");
        assert_eq!(name, "web tier");
        assert_eq!(owner.map(String::from).as_deref(), Some("vra:abc]/nic0"));
        let (name, owner) = split_owner("plain subnet");
        assert_eq!((name.as_str(), owner), ("plain subnet", None));
    }

    #[test]
    fn a_written_marker_is_found_again_and_a_broken_one_is_text() {
        let o = owner("vra:1/nic1");
        let text = format!("web {}", owner_marker(&o));
        assert_eq!(text, "web [ipamgw-owner:vra:1/nic1]");
        assert_eq!(split_owner(&text), ("web".to_owned(), Some(o.clone())));
        // Not at the end: no owner, the text kept whole.
        let (t, found) = split_owner("[ipamgw-owner:vra:1/nic1] web");
        assert_eq!((t.as_str(), found), ("[ipamgw-owner:vra:1/nic1] web", None));
        // A marker whose owner does not parse is no owner, and is cut from the text.
        assert_eq!(split_owner("web [ipamgw-owner:]"), ("web".to_owned(), None));
        assert_eq!(default_description(&o), "ipam-gateway: vra:1/nic1");
    }

    #[test]
    fn lists_split_on_commas_semicolons_and_spaces() {
        assert_eq!(
            split_list("a.example, b.example;c.example  d", &[]),
            ["a.example", "b.example", "c.example", "d"]
        );
        assert_eq!(split_list("\"10.0.0.53\"", &[]), ["\"10.0.0.53\""]);
        assert_eq!(
            split_list("\"10.0.0.53\", \"\" ,10.0.0.54", &['"']),
            ["10.0.0.53", "10.0.0.54"],
            "quotes stripped, an empty item dropped"
        );
        assert!(split_list(" ,; ", &['"']).is_empty());
    }

    fn field_and_why(e: IpamError) -> (String, String) {
        match e {
            IpamError::InvalidInput { field, why } => (field, why),
            other => panic!("not an input error: {other:?}"),
        }
    }

    #[test]
    fn a_specific_address_outside_the_range_names_the_address_field() {
        let cidr: IpNet = "10.50.0.0/29".parse().expect("cidr");
        let range = (
            "10.50.0.1".parse().expect("lo"),
            "10.50.0.6".parse().expect("hi"),
        );
        let at = |a: &str| check_specific(a.parse().expect("addr"), &cidr, range);
        assert!(at("10.50.0.1").is_ok() && at("10.50.0.6").is_ok());
        let (field, why) = field_and_why(at("10.50.0.9").expect_err("outside"));
        assert_eq!(
            (field.as_str(), why.as_str()),
            ("address", "10.50.0.9 is not in network 10.50.0.0/29")
        );
        for edge in ["10.50.0.0", "10.50.0.7"] {
            let (field, why) = field_and_why(at(edge).expect_err("edge"));
            assert_eq!(field, "address");
            assert_eq!(
                why,
                format!("{edge} is the network or broadcast address of 10.50.0.0/29")
            );
        }
    }

    #[test]
    fn a_subnet_asked_for_must_be_a_prefix_inside_the_block() {
        let block: IpNet = "10.60.0.0/16".parse().expect("block");
        let net = |s: &str| s.parse::<IpNet>().expect("net");
        assert_eq!(
            subnet_in_block(&block, net("10.60.1.7/24"), 24).expect("inside"),
            net("10.60.1.0/24"),
            "host bits cleared"
        );
        let (field, why) =
            field_and_why(subnet_in_block(&block, net("10.61.0.0/24"), 24).expect_err("outside"));
        assert_eq!(
            (field.as_str(), why.as_str()),
            (
                "subnet",
                "10.61.0.0/24 is not a /24 inside block 10.60.0.0/16"
            )
        );
        let (field, why) =
            field_and_why(subnet_in_block(&block, net("10.60.1.0/25"), 24).expect_err("length"));
        assert_eq!(
            (field.as_str(), why.as_str()),
            (
                "subnet",
                "10.60.1.0/25 is not a /24 inside block 10.60.0.0/16"
            )
        );
    }

    #[test]
    fn a_carved_network_without_a_name_gets_the_default_one() {
        let mut req = CarveRequest {
            block: "7".to_owned(),
            prefix_len: 28,
            owner: owner("vra:net-1"),
            name: None,
            subnet: None,
        };
        assert_eq!(carved_name(&req), "on-demand network");
        req.name = Some("  ".to_owned());
        assert_eq!(carved_name(&req), "on-demand network");
        req.name = Some(" web ".to_owned());
        assert_eq!(carved_name(&req), " web ");
    }

    #[test]
    fn shared_errors_keep_their_kind_and_words() {
        match undecodable("ib", "answer to create", "no address") {
            IpamError::Undecodable { backend, detail } => {
                assert_eq!(backend, "ib");
                assert_eq!(detail, "unexpected answer to create: no address");
            }
            other => panic!("{other:?}"),
        }
        let addr: IpAddr = "10.0.0.5".parse().expect("addr");
        let cases = [
            (
                not_exposed("12", "php"),
                "NotFound",
                "network 12 is not exposed by backend php",
            ),
            (
                not_allocated(addr, "12"),
                "NotFound",
                "10.0.0.5 is not allocated in network 12",
            ),
            (
                not_carved("12", "phpIPAM"),
                "Conflict",
                "network 12 was not carved from a block; delete it in phpIPAM",
            ),
            (
                still_holds("default/10.0.0.0/24", 2),
                "Conflict",
                "network default/10.0.0.0/24 still holds 2 allocated address(es); release them first",
            ),
        ];
        for (e, kind, text) in cases {
            match (&e, kind) {
                (IpamError::NotFound(t), "NotFound") | (IpamError::Conflict(t), "Conflict") => {
                    assert_eq!(t, text)
                }
                _ => panic!("{e:?} is not {kind}"),
            }
        }
    }
}
