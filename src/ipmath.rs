//! Address arithmetic every backend and the config share: the usable hosts of a network, the
//! address after another, and whether a network of a given size can be carved from a block.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::domain::{IpamError, IpamResult};

/// First and last address of a network as integers (IPv4 widened), for interval comparisons.
pub fn bounds(net: &IpNet) -> (u128, u128) {
    match net {
        IpNet::V4(n) => (
            u128::from(u32::from(n.network())),
            u128::from(u32::from(n.broadcast())),
        ),
        IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
    }
}

/// The address after `a` (saturating at the top of the family).
pub fn next_addr(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V4(v) => IpAddr::from(u32::from(v).saturating_add(1).to_be_bytes()),
        IpAddr::V6(v) => IpAddr::from(u128::from(v).saturating_add(1).to_be_bytes()),
    }
}

/// First and last assignable host of a network: IPv4 skips the network and broadcast addresses
/// (except /31 and /32), IPv6 skips the subnet-router anycast address (except /127 and /128).
pub fn usable_range(net: &IpNet) -> (IpAddr, IpAddr) {
    match net {
        IpNet::V4(n) => {
            let (lo, hi) = (u32::from(n.network()), u32::from(n.broadcast()));
            if n.prefix_len() >= 31 {
                (
                    IpAddr::from(lo.to_be_bytes()),
                    IpAddr::from(hi.to_be_bytes()),
                )
            } else {
                (
                    IpAddr::from((lo + 1).to_be_bytes()),
                    IpAddr::from((hi - 1).to_be_bytes()),
                )
            }
        }
        IpNet::V6(n) => {
            let (lo, hi) = (u128::from(n.network()), u128::from(n.broadcast()));
            if n.prefix_len() >= 127 {
                (
                    IpAddr::from(lo.to_be_bytes()),
                    IpAddr::from(hi.to_be_bytes()),
                )
            } else {
                (
                    IpAddr::from((lo + 1).to_be_bytes()),
                    IpAddr::from(hi.to_be_bytes()),
                )
            }
        }
    }
}

/// Whether a carved network may be as large as its block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WholeBlock {
    /// The embedded store hands out the whole block as one network.
    Allowed,
    /// phpIPAM and Infoblox carve strictly smaller subnets (the block stays a container).
    Refused,
}

/// A `/prefix_len` network can be carved from `block` (shown as `block_name`): a 400 on
/// `prefix_len` naming the sizes that can, otherwise.
pub fn check_carve_prefix(
    prefix_len: u8,
    block_name: &str,
    block: &IpNet,
    whole: WholeBlock,
) -> IpamResult<()> {
    let max = block.max_prefix_len();
    let min = match whole {
        WholeBlock::Allowed => block.prefix_len(),
        WholeBlock::Refused => block.prefix_len().saturating_add(1),
    };
    if prefix_len < min || prefix_len > max {
        return Err(IpamError::invalid(
            "prefix_len",
            format!(
                "/{prefix_len} does not fit in block {block_name} ({block}); use /{min}../{max}"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("cidr")
    }

    fn addr(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn usable_range_skips_network_and_broadcast_except_point_to_point() {
        assert_eq!(
            usable_range(&net("10.0.0.0/24")),
            (addr("10.0.0.1"), addr("10.0.0.254"))
        );
        assert_eq!(
            usable_range(&net("10.0.0.0/31")),
            (addr("10.0.0.0"), addr("10.0.0.1"))
        );
        assert_eq!(
            usable_range(&net("10.0.0.7/32")),
            (addr("10.0.0.7"), addr("10.0.0.7"))
        );
        // IPv6 has no broadcast: only the subnet-router anycast address is skipped.
        assert_eq!(
            usable_range(&net("2001:db8::/126")),
            (addr("2001:db8::1"), addr("2001:db8::3"))
        );
        assert_eq!(
            usable_range(&net("2001:db8::/127")),
            (addr("2001:db8::"), addr("2001:db8::1"))
        );
    }

    #[test]
    fn next_addr_steps_and_saturates_at_the_top_of_the_family() {
        assert_eq!(next_addr(addr("10.0.0.255")), addr("10.0.1.0"));
        assert_eq!(next_addr(addr("255.255.255.255")), addr("255.255.255.255"));
        assert_eq!(next_addr(addr("2001:db8::ffff")), addr("2001:db8::1:0"));
        let top = addr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
        assert_eq!(next_addr(top), top);
    }

    #[test]
    fn bounds_widen_ipv4_and_cover_the_whole_network() {
        assert_eq!(bounds(&net("10.0.0.0/30")), (0x0a00_0000, 0x0a00_0003));
        assert_eq!(bounds(&net("::/127")), (0, 1));
    }

    #[test]
    fn carve_prefix_is_checked_against_the_block_naming_the_sizes_that_fit() {
        let block = net("10.8.0.0/16");
        assert!(check_carve_prefix(16, "b", &block, WholeBlock::Allowed).is_ok());
        assert!(check_carve_prefix(32, "b", &block, WholeBlock::Allowed).is_ok());
        assert!(check_carve_prefix(17, "b", &block, WholeBlock::Refused).is_ok());
        for (len, whole, hint) in [
            (15, WholeBlock::Allowed, "use /16../32"),
            (33, WholeBlock::Allowed, "use /16../32"),
            (16, WholeBlock::Refused, "use /17../32"),
            (33, WholeBlock::Refused, "use /17../32"),
        ] {
            let e = check_carve_prefix(len, "b", &block, whole).expect_err("does not fit");
            let IpamError::InvalidInput { field, why } = &e else {
                panic!("invalid input expected, got {e:?}");
            };
            assert_eq!(field, "prefix_len");
            assert_eq!(
                why,
                &format!("/{len} does not fit in block b (10.8.0.0/16); {hint}")
            );
        }
        let v6 = net("2001:db8::/48");
        let e = check_carve_prefix(129, "v6", &v6, WholeBlock::Refused).expect_err("too long");
        assert!(e.to_string().contains("use /49../128"), "{e}");
    }
}
