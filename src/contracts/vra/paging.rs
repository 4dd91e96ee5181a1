//! Paging for Get IP Ranges and Get IP Blocks: the page token (`PageToken`, its `ListingKind`),
//! the snapshot a token names, and cutting one page out of it.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{Listing, PagedSnapshot, VraState};
use crate::contracts::input::Field;
use crate::domain::IpamError;
use crate::service::Caller;

pub(super) struct Paging {
    pub(super) max: Option<usize>,
    token: Option<PageToken>,
}

/// Which listing a page token walks. On the wire it is one letter of the token (`r`, `b`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ListingKind {
    Ranges,
    Blocks,
}

impl ListingKind {
    fn letter(self) -> char {
        match self {
            ListingKind::Ranges => 'r',
            ListingKind::Blocks => 'b',
        }
    }

    fn from_letter(letter: char) -> Option<Self> {
        match letter {
            'r' => Some(ListingKind::Ranges),
            'b' => Some(ListingKind::Blocks),
            _ => None,
        }
    }
}

/// `ranges` or `blocks`, as messages name the listing.
impl fmt::Display for ListingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ListingKind::Ranges => "ranges",
            ListingKind::Blocks => "blocks",
        })
    }
}

impl Listing {
    pub(super) fn kind(&self) -> ListingKind {
        match self {
            Listing::Ranges(_) => ListingKind::Ranges,
            Listing::Blocks(_) => ListingKind::Blocks,
        }
    }
}

/// `<snapshot id>.<offset>.<kind><base64url(last id served)>`. The snapshot id finds the frozen
/// listing on the replica that served the first page; on any other replica (or once it expired)
/// the last id continues the walk over a fresh listing sorted by id: no duplicates, no gaps for
/// the networks present throughout, and no state shared between replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PageToken {
    /// Hex digits (a simple UUID when this gateway issued it).
    id: String,
    offset: usize,
    /// The listing walked and the last id of the previous page.
    after: Option<(ListingKind, String)>,
}

impl PageToken {
    /// Reads a token as [`fmt::Display`] writes it; `None` for anything this gateway did not
    /// issue (an id that is not hex, no offset or one that is not a number, a kind that is neither
    /// `r` nor `b`, a last id that is not base64url of UTF-8).
    fn parse(text: &str) -> Option<PageToken> {
        let mut parts = text.splitn(3, '.');
        let id = parts.next().unwrap_or_default();
        let offset: usize = parts.next()?.parse().ok()?;
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        let after = match parts.next() {
            None => None,
            Some(rest) => {
                let mut chars = rest.chars();
                let kind = chars.next().and_then(ListingKind::from_letter)?;
                let last = URL_SAFE_NO_PAD.decode(chars.as_str()).ok()?;
                Some((kind, String::from_utf8(last).ok()?))
            }
        };
        Some(PageToken {
            id: id.to_owned(),
            offset,
            after,
        })
    }
}

impl fmt::Display for PageToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.id, self.offset)?;
        if let Some((kind, last)) = &self.after {
            write!(f, ".{}{}", kind.letter(), URL_SAFE_NO_PAD.encode(last))?;
        }
        Ok(())
    }
}

pub(super) fn paging(root: &Field<'_>) -> Result<Paging, IpamError> {
    let p = root.get("pagingAndSorting");
    let max = p
        .get("maxResults")
        .opt_u64()?
        .filter(|m| *m > 0)
        .map(|m| usize::try_from(m).unwrap_or(usize::MAX));
    let token_field = p.get("pageToken");
    let token = match token_field.opt_str()? {
        None => None,
        Some(t) => Some(PageToken::parse(&t).ok_or_else(|| {
            IpamError::invalid(
                token_field.path(),
                format!("'{t}' is not a page token issued by this gateway"),
            )
        })?),
    };
    Ok(Paging { max, token })
}

pub(super) fn caller_key(caller: &Caller) -> String {
    format!("{}|{}", caller.backend, caller.name)
}

/// Where a page starts in its (id-sorted) listing.
pub(super) enum Start {
    Offset(usize),
    After(String),
}

/// Resolves the snapshot and start of a page: a fresh one for the first page; the frozen one
/// named by the token for the next ones when this replica has it, else a fresh one continued
/// after the token's last id.
pub(super) async fn page_source(
    vra: &VraState,
    caller: &Caller,
    paging: &Paging,
    kind: ListingKind,
    fresh: impl std::future::Future<Output = Result<PagedSnapshot, IpamError>>,
) -> Result<(String, Arc<PagedSnapshot>, Start), IpamError> {
    let new_id = || uuid::Uuid::new_v4().simple().to_string();
    let Some(token) = &paging.token else {
        return Ok((new_id(), Arc::new(fresh.await?), Start::Offset(0)));
    };
    let refused = |why: &str| IpamError::invalid("pagingAndSorting.pageToken", why.to_owned());
    if let Some((k, _)) = &token.after
        && *k != kind
    {
        return Err(refused(&format!(
            "this token belongs to another listing than {kind}"
        )));
    }
    if let Some(snap) = vra.pages.get(&token.id).await {
        if snap.caller == caller_key(caller) && snap.listing.kind() == kind {
            return Ok((token.id.clone(), snap, Start::Offset(token.offset)));
        }
        return Err(refused("this token belongs to another caller or listing"));
    }
    match &token.after {
        Some((_, last)) => Ok((new_id(), Arc::new(fresh.await?), Start::After(last.clone()))),
        None => Err(refused(
            "unknown or expired page token; the next collection starts from the first page again",
        )),
    }
}

/// Cuts one page out of `items` (sorted by `key`) and issues the token for the next one.
pub(super) async fn cut_page<T: Clone>(
    vra: &VraState,
    id: String,
    snap: Arc<PagedSnapshot>,
    items: Vec<T>,
    start: Start,
    max: Option<usize>,
    key: impl Fn(&T) -> String,
) -> Result<(Vec<T>, Option<String>), IpamError> {
    let offset = match start {
        Start::Offset(o) => o,
        Start::After(last) => items.partition_point(|t| key(t) <= last),
    };
    if offset > items.len() {
        return Err(IpamError::invalid(
            "pagingAndSorting.pageToken",
            format!(
                "the token points past the end of its listing ({} item(s))",
                items.len()
            ),
        ));
    }
    let end = match max {
        Some(m) => offset.saturating_add(m).min(items.len()),
        None => items.len(),
    };
    let page = items[offset..end].to_vec();
    let next = match page.last() {
        Some(last) if end < items.len() => {
            let token = PageToken {
                id: id.clone(),
                offset: end,
                after: Some((snap.listing.kind(), key(last))),
            };
            vra.pages.insert(id, snap).await;
            Some(token.to_string())
        }
        _ => None,
    };
    Ok((page, next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::CallContext;
    use crate::contracts::vra::endpoint::DiscoveryFilter;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    fn caller(name: &str) -> Caller {
        Caller {
            name: name.to_owned(),
            backend: "local".to_owned(),
            cx: CallContext::default(),
        }
    }

    fn snapshot(of: &Caller, listing: Listing) -> PagedSnapshot {
        PagedSnapshot {
            caller: caller_key(of),
            listing,
            filter: DiscoveryFilter::default(),
        }
    }

    fn next_page(token: &str) -> Paging {
        Paging {
            max: None,
            token: Some(PageToken::parse(token).expect("a token")),
        }
    }

    fn refusal(r: Result<(String, Arc<PagedSnapshot>, Start), IpamError>) -> String {
        match r {
            Err(IpamError::InvalidInput { field, why }) => {
                assert_eq!(field, "pagingAndSorting.pageToken");
                why
            }
            Err(e) => panic!("not a refusal of the token: {e:?}"),
            Ok(_) => panic!("the token was accepted"),
        }
    }

    #[test]
    fn the_wire_format_is_id_offset_kind_and_base64url_of_the_last_id() {
        let token = PageToken {
            id: ID.to_owned(),
            offset: 1000,
            after: Some((ListingKind::Ranges, "local.ZGVm".to_owned())),
        };
        let text = token.to_string();
        assert_eq!(text, format!("{ID}.1000.rbG9jYWwuWkdWbQ"));
        assert_eq!(PageToken::parse(&text), Some(token));

        let blocks = PageToken {
            id: ID.to_owned(),
            offset: 2,
            after: Some((ListingKind::Blocks, "blk/é".to_owned())),
        };
        assert!(blocks.to_string().starts_with(&format!("{ID}.2.b")));
        assert_eq!(PageToken::parse(&blocks.to_string()), Some(blocks));

        // Without the last id (the replica that has the snapshot needs only id and offset).
        let bare = PageToken {
            id: ID.to_owned(),
            offset: 7,
            after: None,
        };
        assert_eq!(bare.to_string(), format!("{ID}.7"));
        assert_eq!(PageToken::parse(&bare.to_string()), Some(bare));
    }

    #[test]
    fn tokens_this_gateway_did_not_issue_are_refused() {
        for bad in [
            "",
            ID,                           // no offset
            &format!("{ID}."),            // empty offset
            &format!("{ID}.x"),           // offset not a number
            &format!("{ID}.-1"),          // negative offset
            "xyz.3",                      // id not hex
            ".3",                         // empty id
            &format!("{ID}.3."),          // kind missing
            &format!("{ID}.3.qbG9jYWw"),  // kind neither r nor b
            &format!("{ID}.3.r!!"),       // last id not base64url
            &format!("{ID}.3.rbG9jYWw="), // padded base64
            &format!("{ID}.3.r_w"),       // base64url of 0xff: not UTF-8
        ] {
            assert_eq!(PageToken::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_bad_token_is_refused_naming_the_field() {
        let body = serde_json::json!({"pagingAndSorting": {"pageToken": "nope", "maxResults": 5}});
        let root = Field::root(&body).expect("root");
        match paging(&root) {
            Err(IpamError::InvalidInput { field, why }) => {
                assert_eq!(field, "pagingAndSorting.pageToken");
                assert!(why.contains("'nope' is not a page token"), "{why}");
            }
            other => panic!("{:?}", other.map(|p| p.max)),
        }
    }

    #[tokio::test]
    async fn a_token_is_refused_for_another_listing_another_caller_or_once_forgotten() {
        let vra = VraState::default();
        let alice = caller("alice");
        let no_fresh = async { Err(IpamError::Internal("not asked".into())) };

        // A blocks token handed to Get IP Ranges.
        let blocks_token = format!("{ID}.1.b{}", URL_SAFE_NO_PAD.encode("b1"));
        let why = refusal(
            page_source(
                &vra,
                &alice,
                &next_page(&blocks_token),
                ListingKind::Ranges,
                no_fresh,
            )
            .await,
        );
        assert_eq!(why, "this token belongs to another listing than ranges");

        // A snapshot this replica holds for alice's blocks: not for bob, not for ranges.
        vra.pages
            .insert(
                ID.to_owned(),
                Arc::new(snapshot(&alice, Listing::Blocks(Arc::new(Vec::new())))),
            )
            .await;
        let bare = format!("{ID}.1");
        for (who, kind) in [
            (caller("bob"), ListingKind::Blocks),
            (alice.clone(), ListingKind::Ranges),
        ] {
            let no_fresh = async { Err(IpamError::Internal("not asked".into())) };
            let why = refusal(page_source(&vra, &who, &next_page(&bare), kind, no_fresh).await);
            assert_eq!(why, "this token belongs to another caller or listing");
        }
        let no_fresh = async { Err(IpamError::Internal("not asked".into())) };
        let (id, _, start) = page_source(
            &vra,
            &alice,
            &next_page(&bare),
            ListingKind::Blocks,
            no_fresh,
        )
        .await
        .expect("alice's own blocks token");
        assert_eq!(id, ID);
        assert!(matches!(start, Start::Offset(1)));

        // Forgotten (expired, or issued by another replica) without a last id to continue from.
        let unknown = format!("{}.1", "f".repeat(32));
        let no_fresh = async { Err(IpamError::Internal("not asked".into())) };
        let why = refusal(
            page_source(
                &vra,
                &alice,
                &next_page(&unknown),
                ListingKind::Blocks,
                no_fresh,
            )
            .await,
        );
        assert!(why.starts_with("unknown or expired page token"), "{why}");
    }
}
