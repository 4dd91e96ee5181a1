//! Large inventories read from the TOML text one element at a time.
//!
//! An embedded backend can be seeded with thousands of `[[backends.<name>.networks]]` tables. Read
//! as one document, every element goes through the TOML parser's token and event lists, figment's
//! value tree and the copy of it that `extract` merges, all at once: ~48 MB of heap for 10,000
//! networks (a 1.7 MB file), which glibc keeps as resident memory for the life of the process.
//!
//! Here each such element is cut out of the text and read on its own — by the same parser and
//! deserializer as the whole document (figment over TOML), so an element means the same either
//! way — and figment reads what is left, environment overrides included. Anything this path does
//! not handle, and every error, sends the caller back to reading the whole document, so the configs
//! accepted and the errors reported (naming the key) are the same as without it.

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::de::DeserializeOwned;
use toml_parser::Source;
use toml_parser::lexer::TokenKind;

use super::{BackendConfig, Config};

/// A table header of the document: where its line starts and where its key is.
struct Header<'t> {
    /// Byte offset of the start of the header's line (its section runs to the next header).
    start: usize,
    /// Byte offset just after the closing bracket(s).
    body: usize,
    key: &'t str,
    /// `[[key]]` rather than `[key]`.
    array: bool,
}

/// Every table header, in order; `None` when the text is not lexed as expected (the whole-document
/// parser then reports the problem).
fn headers(text: &str) -> Option<Vec<Header<'_>>> {
    let mut out = Vec::new();
    // Open `[` and `{` of values: a `[` at depth 0 that starts a line begins a header.
    let mut depth = 0usize;
    let mut line_start = true;
    let mut line_begin = 0usize;
    let mut tokens = Source::new(text).lex().peekable();
    while let Some(token) = tokens.next() {
        match token.kind() {
            TokenKind::Newline => {
                line_start = true;
                line_begin = token.span().end();
                continue;
            }
            TokenKind::Whitespace => continue,
            TokenKind::Eof => break,
            TokenKind::LeftSquareBracket if depth == 0 && line_start => {
                let second = tokens.next_if(|t| t.kind() == TokenKind::LeftSquareBracket);
                let array = second.is_some();
                let key_start = second.unwrap_or(token).span().end();
                let mut key_end = None;
                for t in tokens.by_ref() {
                    match t.kind() {
                        TokenKind::RightSquareBracket => {
                            key_end = Some(t.span());
                            break;
                        }
                        TokenKind::Newline | TokenKind::Eof => return None,
                        _ => {}
                    }
                }
                let mut end = key_end?;
                if array {
                    end = tokens
                        .next_if(|t| t.kind() == TokenKind::RightSquareBracket)?
                        .span();
                }
                out.push(Header {
                    start: line_begin,
                    body: end.end(),
                    key: text.get(key_start..key_end?.start())?,
                    array,
                });
            }
            TokenKind::LeftSquareBracket | TokenKind::LeftCurlyBracket => depth += 1,
            TokenKind::RightSquareBracket | TokenKind::RightCurlyBracket => {
                depth = depth.checked_sub(1)?;
            }
            _ => {}
        }
        line_start = false;
    }
    Some(out)
}

/// The parts of a dotted key of bare keys (`backends . local.networks`); `None` for quoted keys.
fn bare_parts(key: &str) -> Option<Vec<&str>> {
    key.split('.')
        .map(str::trim)
        .map(|p| {
            let bare = !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            bare.then_some(p)
        })
        .collect()
}

/// The inventory lists read element by element.
const LISTS: [&str; 2] = ["networks", "blocks"];

/// One `[[backends.<name>.<list>]]` list: its elements' bodies, in order.
struct Lifted<'t> {
    backend: &'t str,
    list: &'static str,
    bodies: Vec<&'t str>,
}

/// Reads `text` with the inventory lists of embedded backends taken out and read element by
/// element. `None`: the text has no such list, or something here did not go as expected; the
/// caller reads the whole document instead.
pub(super) fn extract(text: &str, env: Option<Env>) -> Option<Config> {
    let headers = headers(text)?;
    let mut lifted: Vec<Lifted<'_>> = Vec::new();
    let mut rest = String::new();
    let mut kept_from = 0;
    for (i, h) in headers.iter().enumerate() {
        let parts = bare_parts(h.key)?;
        let end = headers.get(i + 1).map_or(text.len(), |n| n.start);
        let list = match parts.as_slice() {
            ["backends", _, list, ..] => LISTS.iter().find(|l| *l == list),
            _ => None,
        };
        let Some(list) = list else { continue };
        // Only plain elements: a sub-table of an element (`[backends.x.networks.tags]`) or a
        // table where an array is expected is left to the whole-document reader.
        if parts.len() != 3 || !h.array {
            return None;
        }
        rest.push_str(text.get(kept_from..h.start)?);
        kept_from = end;
        let body = text.get(h.body..end)?;
        match lifted
            .iter_mut()
            .find(|l| l.backend == parts[1] && l.list == *list)
        {
            Some(l) => l.bodies.push(body),
            None => lifted.push(Lifted {
                backend: parts[1],
                list,
                bodies: vec![body],
            }),
        }
    }
    if lifted.is_empty() {
        return None;
    }
    rest.push_str(text.get(kept_from..)?);

    let file = Figment::new().merge(Toml::string(&rest));
    drop(rest);
    let keys: Vec<String> = lifted
        .iter()
        .map(|l| format!("backends.{}.{}", l.backend, l.list))
        .collect();
    // The same list also written inline in the file: an error the whole-document reader names.
    if keys.iter().any(|k| file.contains(k)) {
        return None;
    }
    let figment = match env {
        Some(env) => file.merge(env),
        None => file,
    };
    let mut config: Config = figment.extract().ok()?;
    for (l, key) in lifted.iter().zip(&keys) {
        // Set in the environment: that value replaces the file's list, as it would when the
        // whole document is read.
        if figment.contains(key) {
            continue;
        }
        let Some(BackendConfig::Embedded(e)) = config.backends.get_mut(l.backend) else {
            return None;
        };
        match l.list {
            "networks" => e.networks = elements(&l.bodies)?,
            _ => e.blocks = elements(&l.bodies)?,
        }
    }
    Some(config)
}

/// Reads each element body on its own, as figment reads a table of the whole document.
fn elements<T: DeserializeOwned>(bodies: &[&str]) -> Option<Vec<T>> {
    let mut out = Vec::with_capacity(bodies.len());
    for body in bodies {
        out.push(Figment::from(Toml::string(body)).extract().ok()?);
    }
    Some(out)
}
