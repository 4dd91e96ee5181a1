//! DNS names: validation, qualification, zone choice and reverse names.
//!
//! Names are handled as lowercase text without the trailing dot (`vm-1.lab.example.com`);
//! [`super::client`] turns them into wire names. The rules are RFC 1035 §2.3.1 (LDH labels, a
//! label at most 63 octets) and RFC 1035 §3.1 / RFC 2181 §11 (a name at most 255 octets on the
//! wire, which is 253 characters in text without the trailing dot).

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// A name that is not a valid DNS name, naming the field it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {why}")]
pub struct NameError {
    pub field: String,
    pub why: String,
}

impl NameError {
    pub fn new(field: impl Into<String>, why: impl Into<String>) -> Self {
        NameError {
            field: field.into(),
            why: why.into(),
        }
    }
}

/// Longest name in text form, without the trailing dot.
pub const MAX_NAME: usize = 253;
/// Longest label.
pub const MAX_LABEL: usize = 63;

/// Validates a host or zone name (LDH labels); returns it lowercased without a trailing dot.
pub fn validate(field: &str, name: &str) -> Result<String, NameError> {
    let shown = Shown(name);
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.is_empty() {
        return Err(NameError::new(field, "must not be empty"));
    }
    if bare.len() > MAX_NAME {
        return Err(NameError::new(
            field,
            format!(
                "{shown} is {} characters long; a DNS name has at most {MAX_NAME}",
                bare.len()
            ),
        ));
    }
    for label in bare.split('.') {
        if label.is_empty() {
            return Err(NameError::new(
                field,
                format!("{shown} has an empty label (two dots in a row, or a leading dot)"),
            ));
        }
        if label.len() > MAX_LABEL {
            return Err(NameError::new(
                field,
                format!(
                    "{shown} has a label of {} characters; a label has at most {MAX_LABEL}",
                    label.len()
                ),
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(NameError::new(
                field,
                format!("{shown} contains {c:?}; a DNS name has only letters, digits, '-' and '.'"),
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(NameError::new(
                field,
                format!("{shown}: the label '{label}' starts or ends with '-'"),
            ));
        }
    }
    Ok(bare.to_ascii_lowercase())
}

/// Shows a name in an error, cut short when it is very long (the error must stay readable).
struct Shown<'a>(&'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s: String = self.0.chars().take(80).collect();
        if s.len() < self.0.len() {
            write!(f, "{:?}…", s)
        } else {
            write!(f, "{:?}", s)
        }
    }
}

/// Qualifies a host name with a domain.
///
/// - `host.` (trailing dot) is absolute: taken as it is.
/// - a name with a dot (`vm-1.lab.example.com`) is taken as fully qualified;
/// - a single label (`vm-1`) gets the domain appended; without a domain it is an error.
///
/// Both the host and the domain are validated; errors name `field` (or `domain_field` for the
/// domain), and so does the result when the qualified name is too long.
pub fn qualify(
    field: &str,
    host: &str,
    domain_field: &str,
    domain: Option<&str>,
) -> Result<String, NameError> {
    let h = validate(field, host)?;
    if host.ends_with('.') || h.contains('.') {
        return Ok(h);
    }
    let Some(domain) = domain.filter(|d| !d.is_empty()) else {
        return Err(NameError::new(
            field,
            format!("{h:?} is not fully qualified and there is no domain to qualify it with"),
        ));
    };
    let d = validate(domain_field, domain)?;
    validate(field, &format!("{h}.{d}"))
}

/// True when `name` is `zone` or below it (label boundaries; both in normal form).
pub fn in_zone(name: &str, zone: &str) -> bool {
    name == zone
        || (name.len() > zone.len()
            && name.ends_with(zone)
            && name.as_bytes()[name.len() - zone.len() - 1] == b'.')
}

/// The zone of `zones` that holds `name`: the longest suffix on a label boundary.
pub fn zone_for<'a>(name: &str, zones: &'a [String]) -> Option<&'a str> {
    zones
        .iter()
        .filter(|z| in_zone(name, z))
        .max_by_key(|z| z.len())
        .map(String::as_str)
}

/// The PTR owner name of an address: `4.3.2.1.in-addr.arpa`, or 32 nibbles and `ip6.arpa`.
pub fn reverse_name(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => {
            let o = a.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(a) => {
            let mut s = String::with_capacity(72);
            for b in a.octets().iter().rev() {
                s.push(nibble(b & 0x0f));
                s.push('.');
                s.push(nibble(b >> 4));
                s.push('.');
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

fn nibble(n: u8) -> char {
    char::from_digit(u32::from(n), 16).unwrap_or('0')
}

/// The reverse zone derived from a network: IPv4 on the /8, /16 or /24 boundary at or above the
/// prefix (a /20 lives in the /16 zone, a /26 in the /24 zone); IPv6 on the nibble at or above it
/// (a /64 → 16 nibbles, a /62 → 15, at most 31). Networks wider than /8 (IPv4) or /4 (IPv6) have no such
/// zone: an error naming `field`.
pub fn reverse_zone_of(field: &str, net: IpNet) -> Result<String, NameError> {
    match net {
        IpNet::V4(n) => {
            let octets = usize::from(n.prefix_len() / 8).min(3);
            if octets == 0 {
                return Err(NameError::new(
                    field,
                    format!(
                        "{net} is wider than a /8: no reverse zone can be derived; list reverse_zones"
                    ),
                ));
            }
            let o = n.network().octets();
            let mut labels: Vec<String> = o[..octets].iter().map(u8::to_string).collect();
            labels.reverse();
            Ok(format!("{}.in-addr.arpa", labels.join(".")))
        }
        IpNet::V6(n) => {
            // At most 31 nibbles, as IPv4 stops at 3 octets: a zone above the address itself.
            let nibbles = usize::from(n.prefix_len() / 4).min(31);
            if nibbles == 0 {
                return Err(NameError::new(
                    field,
                    format!(
                        "{net} is wider than a /4: no reverse zone can be derived; list reverse_zones"
                    ),
                ));
            }
            // The full reverse name of the network address, cut to the zone's nibbles.
            let full = reverse_name(IpAddr::V6(n.network()));
            let skip = (32 - nibbles) * 2;
            Ok(full[skip..].to_owned())
        }
    }
}

/// Validates a reverse zone name: `in-addr.arpa` with 1 to 3 octet labels (0-255), or
/// `ip6.arpa` with 1 to 31 hex nibble labels. Returns it in normal form.
pub fn validate_reverse_zone(field: &str, zone: &str) -> Result<String, NameError> {
    let z = validate(field, zone)?;
    if let Some(rest) = z.strip_suffix(".in-addr.arpa") {
        let labels: Vec<&str> = rest.split('.').collect();
        let octets_ok = labels
            .iter()
            .all(|l| l.parse::<u8>().is_ok() && (l.len() == 1 || !l.starts_with('0')));
        if labels.len() > 3 || !octets_ok {
            return Err(NameError::new(
                field,
                format!(
                    "{z:?}: an IPv4 reverse zone is 1 to 3 octets (0-255) before .in-addr.arpa, like 20.10.in-addr.arpa"
                ),
            ));
        }
        return Ok(z);
    }
    if let Some(rest) = z.strip_suffix(".ip6.arpa") {
        let labels: Vec<&str> = rest.split('.').collect();
        let nibbles_ok = labels
            .iter()
            .all(|l| l.len() == 1 && l.chars().all(|c| c.is_ascii_hexdigit()));
        if labels.len() > 31 || !nibbles_ok {
            return Err(NameError::new(
                field,
                format!("{z:?}: an IPv6 reverse zone is 1 to 31 hex nibbles before .ip6.arpa"),
            ));
        }
        return Ok(z);
    }
    Err(NameError::new(
        field,
        format!("{z:?} is not a reverse zone: it must end in .in-addr.arpa or .ip6.arpa"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn valid_names_are_normalised() {
        assert_eq!(
            validate("f", "VM-1.Lab.Example.COM.").expect("should succeed"),
            "vm-1.lab.example.com"
        );
        assert_eq!(validate("f", "a").expect("should succeed"), "a");
        let label = "a".repeat(63);
        assert_eq!(validate("f", &label).expect("should succeed"), label);
    }

    #[test]
    fn bad_names_name_the_field_and_the_reason() {
        let cases = [
            ("", "must not be empty"),
            (".", "must not be empty"),
            ("a..b", "empty label"),
            (".a", "empty label"),
            ("a_b", "contains '_'"),
            ("a b", "contains ' '"),
            ("vm-ä", "contains 'ä'"),
            ("-a", "starts or ends with '-'"),
            ("a-.b", "starts or ends with '-'"),
        ];
        for (input, why) in cases {
            let e = validate("hostname", input).expect_err("should be refused");
            assert_eq!(e.field, "hostname", "{input:?}");
            assert!(e.why.contains(why), "{input:?}: {}", e.why);
        }
        let long_label = format!("{}.com", "a".repeat(64));
        let e = validate("hostname", &long_label).expect_err("should be refused");
        assert!(e.why.contains("label of 64 characters"), "{}", e.why);
        // 4 × 63 + 3 dots = 255 > 253
        let long = vec!["a".repeat(63); 4].join(".");
        let e = validate("hostname", &long).expect_err("should be refused");
        assert!(e.why.contains("255 characters"), "{}", e.why);
        assert!(e.to_string().starts_with("`hostname`: "));
    }

    #[test]
    fn qualification() {
        let q = |h: &str, d: Option<&str>| qualify("hostname", h, "domain", d);
        assert_eq!(
            q("vm-1", Some("lab.example.com")).expect("should succeed"),
            "vm-1.lab.example.com"
        );
        assert_eq!(
            q("vm-1.other.org", Some("lab.example.com")).expect("should succeed"),
            "vm-1.other.org"
        );
        assert_eq!(
            q("vm-1.", Some("lab.example.com")).expect("should succeed"),
            "vm-1"
        );
        let e = q("vm-1", None).expect_err("should be refused");
        assert_eq!(e.field, "hostname");
        assert!(e.why.contains("not fully qualified"), "{}", e.why);
        let e = q("vm-1", Some("bad..domain")).expect_err("should be refused");
        assert_eq!(e.field, "domain");
        let e = q(&"a".repeat(63), Some(&vec!["b".repeat(63); 3].join(".")))
            .expect_err("should be refused");
        assert_eq!(e.field, "hostname");
    }

    #[test]
    fn zone_choice_is_the_longest_suffix_on_a_label_boundary() {
        let zones = vec![
            "example.com".to_owned(),
            "lab.example.com".to_owned(),
            "b.example.com".to_owned(),
        ];
        assert_eq!(
            zone_for("vm.lab.example.com", &zones),
            Some("lab.example.com")
        );
        assert_eq!(zone_for("vm.example.com", &zones), Some("example.com"));
        assert_eq!(zone_for("lab.example.com", &zones), Some("lab.example.com"));
        // "ab.example.com" is not below "b.example.com"
        assert_eq!(zone_for("vm.ab.example.com", &zones), Some("example.com"));
        assert_eq!(zone_for("vm.example.org", &zones), None);
        assert_eq!(zone_for("xexample.com", &zones), None);
    }

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("10.20.0.5".parse().expect("should succeed")),
            "5.0.20.10.in-addr.arpa"
        );
        assert_eq!(
            reverse_name("2001:db8::1".parse().expect("should succeed")),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
    }

    #[test]
    fn reverse_zones_derived_from_networks() {
        let z = |n: &str| reverse_zone_of("network", n.parse().expect("should succeed"));
        assert_eq!(
            z("10.20.0.0/24").expect("should succeed"),
            "0.20.10.in-addr.arpa"
        );
        assert_eq!(
            z("10.20.0.64/26").expect("should succeed"),
            "0.20.10.in-addr.arpa"
        );
        assert_eq!(
            z("10.20.0.0/16").expect("should succeed"),
            "20.10.in-addr.arpa"
        );
        assert_eq!(
            z("10.20.16.0/20").expect("should succeed"),
            "20.10.in-addr.arpa"
        );
        assert_eq!(z("10.0.0.0/8").expect("should succeed"), "10.in-addr.arpa");
        assert_eq!(
            z("10.20.0.5/32").expect("should succeed"),
            "0.20.10.in-addr.arpa"
        );
        let e = z("10.0.0.0/7").expect_err("should be refused");
        assert_eq!(e.field, "network");
        assert_eq!(
            z("2001:db8:0:20::/64").expect("should succeed"),
            "0.2.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
        assert_eq!(
            z("2001:db8::/32").expect("should succeed"),
            "8.b.d.0.1.0.0.2.ip6.arpa"
        );
        assert_eq!(
            z("2001:db8:0:20::/62").expect("should succeed"),
            "2.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
        assert!(z("::/3").is_err());
        // the derived zone holds the network's reverse names
        for (net, addr) in [
            ("10.20.16.0/20", "10.20.31.7"),
            ("2001:db8:0:20::/62", "2001:db8:0:23::9"),
        ] {
            let zone = z(net).expect("should succeed");
            assert!(
                in_zone(&reverse_name(addr.parse().expect("should succeed")), &zone),
                "{net}"
            );
        }
    }

    #[test]
    fn reverse_zone_validation() {
        let v = |z: &str| validate_reverse_zone("dns.lab.reverse_zones[0]", z);
        assert_eq!(
            v("20.10.in-addr.arpa.").expect("should succeed"),
            "20.10.in-addr.arpa"
        );
        assert!(v("0.2.0.0.8.b.d.0.1.0.0.2.ip6.arpa").is_ok());
        for bad in [
            "lab.example.com",
            "256.10.in-addr.arpa",
            "1.2.3.4.in-addr.arpa",
            "010.in-addr.arpa",
            "ab.ip6.arpa",
            "in-addr.arpa",
        ] {
            let e = v(bad).expect_err("should be refused");
            assert_eq!(e.field, "dns.lab.reverse_zones[0]", "{bad}");
        }
    }

    proptest! {
        /// Any text is either a valid name (that validates again to itself) or an error naming
        /// the field; never a panic.
        #[test]
        fn any_text_is_a_valid_name_or_a_named_error(s in "\\PC{0,300}") {
            match validate("hostname", &s) {
                Ok(n) => {
                    prop_assert!(n.len() <= MAX_NAME);
                    prop_assert!(n.split('.').all(|l| !l.is_empty() && l.len() <= MAX_LABEL));
                    prop_assert_eq!(validate("hostname", &n).expect("should succeed"), n.clone());
                }
                Err(e) => prop_assert_eq!(e.field, "hostname"),
            }
        }

        /// Name-like text (the shape owners and host names take) qualified with a domain.
        #[test]
        fn qualified_host_names_are_valid_or_named_errors(
            host in "[a-zA-Z0-9._ -]{0,80}",
            domain in proptest::option::of("[a-z0-9.-]{0,200}"),
        ) {
            match qualify("hostname", &host, "domain", domain.as_deref()) {
                Ok(n) => prop_assert_eq!(validate("x", &n).expect("should succeed"), n.clone()),
                Err(e) => prop_assert!(e.field == "hostname" || e.field == "domain"),
            }
        }

        /// Every address has a reverse name inside the zone derived from any network holding it.
        #[test]
        fn reverse_names_fall_in_derived_zones(bits in any::<u128>(), len in 4u8..=128, v4 in any::<bool>()) {
            let (net, addr): (IpNet, IpAddr) = if v4 {
                let a = std::net::Ipv4Addr::from((bits >> 96) as u32);
                let l = 8 + len % 25;
                (ipnet::Ipv4Net::new(a, l).expect("should succeed").trunc().into(), a.into())
            } else {
                let a = std::net::Ipv6Addr::from(bits);
                (ipnet::Ipv6Net::new(a, len).expect("should succeed").trunc().into(), a.into())
            };
            let zone = reverse_zone_of("network", net).expect("should succeed");
            let name = reverse_name(addr);
            prop_assert!(validate("x", &name).is_ok());
            prop_assert!(in_zone(&name, &zone), "{} not in {}", name, zone);
            prop_assert!(validate_reverse_zone("x", &zone).is_ok(), "{}", zone);
        }
    }
}
