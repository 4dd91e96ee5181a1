//! phpIPAM's column limits, and how the gateway fits what it writes into them.
//!
//! phpIPAM 1.8.2 runs MariaDB in strict mode: a value longer than its column is not truncated,
//! the whole `POST` or `PATCH` fails with 500 `Error: SQLSTATE[22001]: String data, right
//! truncated: 1406 Data too long for column '<column>' at row 1` and nothing is written
//! (`fixtures/phpipam/146-…` to `150-…`, and the fixtures README, "Column limits are enforced,
//! not truncated"). The limits are those of phpIPAM v1.8.2's `db/SCHEMA.sql`. A `varchar(N)`
//! counts characters (Unicode code points, as `char` does), a `text` column counts bytes.
//!
//! What the gateway does with a value that does not fit, per column:
//! - **descriptions** (free text the gateway composes, e.g. `vRA <resource> NIC 0, requested by
//!   <user>: <description>`) are shortened by [`Column::shorten`]: the start is kept, cut at a
//!   character boundary, trailing blanks dropped, and `…` appended so a reader sees it was cut.
//!   The shortened text is what the gateway reports as written.
//! - **hostnames** are never cut (a cut name is another name, which a reader or a DNS sync would
//!   take at its word): longer than the column is a 400 naming `hostname` ([`Column::check`]).
//!   A DNS name has at most 253 characters, so a real one always fits.
//! - **owners** are the lookup key: never cut either, a 400 naming `owner` (see `record_body`).
//! - **MAC addresses** are normalised to 17 characters ([`crate::domain::Mac`]), within 20.

use std::borrow::Cow;

use crate::domain::IpamError;

/// How a column measures its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `varchar(N)`: N characters whatever their encoded size.
    Chars(usize),
    /// `text`: N bytes of UTF-8 (utf8mb4, as phpIPAM creates its tables).
    Bytes(usize),
}

/// A phpIPAM column the gateway writes text into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// The field name in the API (and the column name in phpIPAM's error message).
    pub name: &'static str,
    pub limit: Limit,
}

/// `ipaddresses.description varchar(64)`: 64 characters pass, 65 are refused
/// (`fixtures/phpipam/146-addresses-first-free-post-description-64.json`, `147-…-65.json`;
/// on `PATCH` too, `150-addresses-patch-description-65.json`).
pub const ADDRESS_DESCRIPTION: Column = Column {
    name: "description",
    limit: Limit::Chars(64),
};

/// `ipaddresses.owner varchar(128)` (`fixtures/phpipam/148-addresses-first-free-post-owner-129.json`).
pub const ADDRESS_OWNER: Column = Column {
    name: "owner",
    limit: Limit::Chars(128),
};

/// `ipaddresses.hostname varchar(255)`
/// (`fixtures/phpipam/149-addresses-first-free-post-hostname-256.json`).
pub const ADDRESS_HOSTNAME: Column = Column {
    name: "hostname",
    limit: Limit::Chars(255),
};

/// `ipaddresses.mac varchar(20)` (phpIPAM v1.8.2 `db/SCHEMA.sql`; fixtures README).
pub const ADDRESS_MAC: Column = Column {
    name: "mac",
    limit: Limit::Chars(20),
};

/// `ipaddresses.note text` (phpIPAM v1.8.2 `db/SCHEMA.sql`; every recorded address carries
/// `note`, e.g. `fixtures/phpipam/74-addresses-get-by-id.json`): 65,535 bytes. The gateway keeps
/// an address's further DNS names there ([`super::addresses::names_note`]).
pub const ADDRESS_NOTE: Column = Column {
    name: "note",
    limit: Limit::Bytes(65_535),
};

/// `subnets.description text` (phpIPAM v1.8.2 `db/SCHEMA.sql`): 65,535 bytes. Not recorded:
/// the same strict-mode error is assumed when it is exceeded.
pub const SUBNET_DESCRIPTION: Column = Column {
    name: "description",
    limit: Limit::Bytes(65_535),
};

/// What a shortened text ends with.
pub const ELLIPSIS: char = '…';

impl Column {
    /// The length of `text` as this column counts it.
    pub fn measure(&self, text: &str) -> usize {
        match self.limit {
            Limit::Chars(_) => text.chars().count(),
            Limit::Bytes(_) => text.len(),
        }
    }

    /// The column's size, in its unit ([`Limit`]).
    pub fn max(&self) -> usize {
        match self.limit {
            Limit::Chars(n) | Limit::Bytes(n) => n,
        }
    }

    fn unit(&self) -> &'static str {
        match self.limit {
            Limit::Chars(_) => "characters",
            Limit::Bytes(_) => "bytes",
        }
    }

    pub fn fits(&self, text: &str) -> bool {
        self.measure(text) <= self.max()
    }

    /// `text` unchanged when it fits; otherwise its start, cut at a character boundary, without
    /// trailing blanks, followed by [`ELLIPSIS`], as long as the column allows.
    pub fn shorten<'a>(&self, text: &'a str) -> Cow<'a, str> {
        self.shorten_before(text, "")
    }

    /// `head` shortened like [`Column::shorten`] so that `head` + `tail` fits; `tail` is kept
    /// whole (a marker the gateway reads back). When `tail` alone leaves no room, `head` is
    /// dropped to `…`; the caller makes sure `tail` itself fits.
    pub fn shorten_before<'a>(&self, head: &'a str, tail: &str) -> Cow<'a, str> {
        let whole = self.measure(head) + self.measure(tail);
        if whole <= self.max() {
            return Cow::Borrowed(head);
        }
        let mut ellipsis = [0u8; 4];
        let ellipsis = ELLIPSIS.encode_utf8(&mut ellipsis);
        let budget = self
            .max()
            .saturating_sub(self.measure(tail))
            .saturating_sub(self.measure(ellipsis));
        let mut used = 0;
        let mut end = 0;
        for (at, c) in head.char_indices() {
            let size = match self.limit {
                Limit::Chars(_) => 1,
                Limit::Bytes(_) => c.len_utf8(),
            };
            if used + size > budget {
                break;
            }
            used += size;
            end = at + c.len_utf8();
        }
        let mut out = head[..end].trim_end().to_owned();
        out.push(ELLIPSIS);
        Cow::Owned(out)
    }

    /// `Ok` when `text` fits; otherwise a 400 naming `field` (the caller's name for it).
    pub fn check(&self, field: &str, text: &str) -> Result<(), IpamError> {
        if self.fits(text) {
            return Ok(());
        }
        Err(IpamError::invalid(
            field,
            format!(
                "is {} {unit} long; phpIPAM's {} column holds at most {} {unit}",
                self.measure(text),
                self.name,
                self.max(),
                unit = self.unit(),
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Mac;

    #[test]
    fn text_that_fits_is_written_as_given() {
        let x64 = "x".repeat(64);
        assert_eq!(ADDRESS_DESCRIPTION.shorten(&x64), x64.as_str());
        assert!(matches!(
            ADDRESS_DESCRIPTION.shorten(&x64),
            Cow::Borrowed(_)
        ));
        assert_eq!(ADDRESS_DESCRIPTION.shorten(""), "");
    }

    #[test]
    fn a_long_description_keeps_its_start_and_ends_with_an_ellipsis() {
        let y65 = "y".repeat(65);
        let got = ADDRESS_DESCRIPTION.shorten(&y65);
        assert_eq!(got.chars().count(), 64);
        assert_eq!(got, format!("{}…", "y".repeat(63)));
    }

    #[test]
    fn characters_are_counted_not_bytes() {
        // 64 two-byte characters (128 bytes) fit a varchar(64) ...
        let e64 = "é".repeat(64);
        assert_eq!(ADDRESS_DESCRIPTION.shorten(&e64), e64.as_str());
        // ... 65 do not, and the cut falls between characters.
        let e65 = "é".repeat(65);
        let got = ADDRESS_DESCRIPTION.shorten(&e65);
        assert_eq!(got, format!("{}…", "é".repeat(63)));
        // Three-byte CJK, mixed with ASCII.
        let cjk = format!("vRA 网络服务器 NIC 0: {}", "数据中心".repeat(20));
        let got = ADDRESS_DESCRIPTION.shorten(&cjk);
        assert_eq!(got.chars().count(), 64);
        let kept: String = cjk.chars().take(63).collect();
        assert_eq!(got, format!("{kept}…"));
        assert!(got.starts_with("vRA 网络服务器 NIC 0: 数据中心"), "{got}");
    }

    #[test]
    fn blanks_before_the_ellipsis_are_dropped() {
        let text = format!("{} tail", "a".repeat(62));
        let got = ADDRESS_DESCRIPTION.shorten(&text);
        assert_eq!(got, format!("{}…", "a".repeat(62)));
    }

    #[test]
    fn a_text_column_counts_bytes_and_never_splits_a_character() {
        let col = Column {
            name: "description",
            limit: Limit::Bytes(10),
        };
        // "ééééé" is 10 bytes: fits.
        assert_eq!(col.shorten("ééééé"), "ééééé");
        // 12 bytes: 3 for the ellipsis leaves 7, i.e. three whole "é" (6 bytes).
        let got = col.shorten("éééééé");
        assert_eq!(got, "ééé…");
        assert!(got.len() <= 10);
        let big = "網".repeat(30_000); // 90,000 bytes
        let got = SUBNET_DESCRIPTION.shorten(&big);
        assert!(got.len() <= 65_535 && got.len() > 65_530, "{}", got.len());
        assert!(got.ends_with('…'));
    }

    #[test]
    fn a_marker_after_the_text_is_kept_whole() {
        let tail = " [ipamgw-owner:vra:net-1]";
        let head = "n".repeat(70_000);
        let got = SUBNET_DESCRIPTION.shorten_before(&head, tail);
        let written = format!("{got}{tail}");
        assert!(written.len() <= 65_535 && written.len() > 65_530);
        assert!(
            written.ends_with("n… [ipamgw-owner:vra:net-1]"),
            "the marker is whole"
        );
        assert_eq!(
            ADDRESS_DESCRIPTION.shorten_before("short", tail),
            "short",
            "fits: unchanged"
        );
        // No room at all for the head: only the ellipsis remains.
        let col = Column {
            name: "description",
            limit: Limit::Chars(5),
        };
        assert_eq!(col.shorten_before("abcdef", "1234"), "…");
    }

    #[test]
    fn values_that_must_not_be_cut_are_refused_with_their_field() {
        let h255 = "h".repeat(255);
        assert!(ADDRESS_HOSTNAME.check("hostname", &h255).is_ok());
        let h256 = "h".repeat(256);
        match ADDRESS_HOSTNAME.check("hostname", &h256) {
            Err(IpamError::InvalidInput { field, why }) => {
                assert_eq!(field, "hostname");
                assert!(why.contains("256 characters"), "{why}");
                assert!(why.contains("at most 255"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        // 255 multi-byte characters still fit: the column counts characters.
        assert!(ADDRESS_HOSTNAME.check("hostname", &"ü".repeat(255)).is_ok());
    }

    #[test]
    fn every_normalised_mac_fits_its_column() {
        for text in ["00:50:56:AA:BB:CC", "0050.56aa.bbcc", "00-50-56-aa-bb-cc"] {
            let mac = Mac::parse(text).expect("mac");
            assert!(ADDRESS_MAC.fits(mac.as_str()), "{mac:?}");
        }
    }
}
