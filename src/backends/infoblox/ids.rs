//! Network ids: `<network view>/<cidr>`, stable across listings and all an allocation needs
//! (a view name may itself hold slashes, so the id is split from the right).

use ipnet::IpNet;

/// `<view>/<cidr>` → (view, cidr).
pub(super) fn parse_id(id: &str) -> Option<(String, IpNet)> {
    let (head, len) = id.rsplit_once('/')?;
    let (view, addr) = head.rsplit_once('/')?;
    let cidr: IpNet = format!("{addr}/{len}").parse().ok()?;
    (!view.is_empty()).then(|| (view.to_owned(), cidr))
}

pub(super) fn net_id(view: &str, cidr: &IpNet) -> String {
    format!("{view}/{cidr}")
}
#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn ids_round_trip_with_views_holding_slashes() {
        let cidr: IpNet = "2001:db8:20::/64".parse().expect("cidr");
        let id = net_id("lab/east", &cidr);
        assert_eq!(parse_id(&id), Some(("lab/east".to_owned(), cidr)));
        assert_eq!(parse_id("10.0.0.0/24"), None, "a view is required");
        assert_eq!(parse_id("default/garbage/24"), None);
    }
}
