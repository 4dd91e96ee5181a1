//! Reading what callers send, the same way for every contract.
//!
//! - [`Field`], the lenient reader of vRA's action inputs and Avi's function arguments. vRA is
//!   inconsistent about types (`"nicIndex": "0"` in one operation, `0` in the next; booleans as
//!   `"true"`), drops fields between releases (`resourceInfo.owner` in 8.6.0) and adds new ones
//!   in others; Avi's script hands over what the controller gives it. So inputs are read field
//!   by field: numbers and booleans as text or native, `null` and absent alike, unknown fields
//!   ignored, and every error names the field by its full path (`ipAllocations[1].ipRangeIds[0]`).
//! - [`parse_json`], the strict reader of the native API: a typed body, unknown fields refused,
//!   the offending field named.
//! - Parsers of single values ([`ip`], [`owner`], [`mac`]) whose errors name the field.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::domain::{IpamError, Mac, Owner};

/// One field of the inputs, with its path for error messages.
#[derive(Debug, Clone)]
pub struct Field<'a> {
    value: Option<&'a Value>,
    path: String,
}

fn invalid(path: &str, why: impl Into<String>) -> IpamError {
    IpamError::invalid(if path.is_empty() { "body" } else { path }, why)
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

impl<'a> Field<'a> {
    /// The whole inputs dict. It must be a JSON object.
    pub fn root(value: &'a Value) -> Result<Self, IpamError> {
        if !value.is_object() {
            return Err(invalid(
                "body",
                format!(
                    "the action inputs must be a JSON object, not {}",
                    kind_of(value)
                ),
            ));
        }
        Ok(Field {
            value: Some(value),
            path: String::new(),
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// A member of an object. Absent, `null`, or a parent that is not an object all read as absent.
    pub fn get(&self, key: &str) -> Field<'a> {
        let path = if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        };
        Field {
            value: self
                .value
                .and_then(Value::as_object)
                .and_then(|o| o.get(key))
                .filter(|v| !v.is_null()),
            path,
        }
    }

    pub fn is_present(&self) -> bool {
        self.value.is_some()
    }

    pub fn is_object(&self) -> bool {
        self.value.is_some_and(Value::is_object)
    }

    /// Text; numbers and booleans are given as their text. Empty (or blank) text reads as absent.
    pub fn opt_str(&self) -> Result<Option<String>, IpamError> {
        match self.value {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(other) => Err(invalid(
                &self.path,
                format!("expected text, got {}", kind_of(other)),
            )),
        }
    }

    pub fn req_str(&self) -> Result<String, IpamError> {
        self.opt_str()?
            .ok_or_else(|| invalid(&self.path, "is required"))
    }

    /// A non-negative integer, native or as text (`3`, `"3"`, `3.0`).
    pub fn opt_u64(&self) -> Result<Option<u64>, IpamError> {
        let bad =
            |shown: &str| invalid(&self.path, format!("expected a whole number, got {shown}"));
        match self.value {
            None => Ok(None),
            Some(Value::Number(n)) => {
                if let Some(u) = n.as_u64() {
                    return Ok(Some(u));
                }
                match n.as_f64() {
                    Some(f) if f >= 0.0 && f.fract() == 0.0 && f <= 9.0e15 => Ok(Some(f as u64)),
                    _ => Err(bad(&n.to_string())),
                }
            }
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => {
                let t = s.trim();
                if let Ok(u) = t.parse::<u64>() {
                    return Ok(Some(u));
                }
                match t.parse::<f64>() {
                    Ok(f) if f >= 0.0 && f.fract() == 0.0 && f <= 9.0e15 => Ok(Some(f as u64)),
                    _ => Err(bad(&format!("'{s}'"))),
                }
            }
            Some(other) => Err(bad(kind_of(other))),
        }
    }

    /// A boolean, native or as text (`true`, `"True"`, `"1"`, `"yes"`) or 0/1.
    pub fn opt_bool(&self) -> Result<Option<bool>, IpamError> {
        match self.value {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(0) => Ok(Some(false)),
                Some(1) => Ok(Some(true)),
                _ => Err(invalid(
                    &self.path,
                    format!("expected true or false, got {n}"),
                )),
            },
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "" => Ok(None),
                "true" | "1" | "yes" | "on" => Ok(Some(true)),
                "false" | "0" | "no" | "off" => Ok(Some(false)),
                _ => Err(invalid(
                    &self.path,
                    format!("expected true or false, got '{s}'"),
                )),
            },
            Some(other) => Err(invalid(
                &self.path,
                format!("expected true or false, got {}", kind_of(other)),
            )),
        }
    }

    /// The items of a list; absent reads as empty. A single object is taken as a list of one.
    pub fn items(&self) -> Result<Vec<Field<'a>>, IpamError> {
        match self.value {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, v)| Field {
                    value: (!v.is_null()).then_some(v),
                    path: format!("{}[{i}]", self.path),
                })
                .collect()),
            Some(v @ Value::Object(_)) => Ok(vec![Field {
                value: Some(v),
                path: format!("{}[0]", self.path),
            }]),
            Some(other) => Err(invalid(
                &self.path,
                format!("expected a list, got {}", kind_of(other)),
            )),
        }
    }

    /// A list of text. Also accepted: one text value, and a JSON-encoded list in text (the way vRA
    /// passes multi-valued form fields).
    pub fn str_list(&self) -> Result<Vec<String>, IpamError> {
        match self.value {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => {
                let t = s.trim();
                if t.starts_with('[') {
                    let parsed: Value = serde_json::from_str(t).map_err(|_| {
                        invalid(&self.path, "text starting with '[' is not a JSON list")
                    })?;
                    let inner = Field {
                        value: Some(&parsed),
                        path: self.path.clone(),
                    };
                    return inner.str_list();
                }
                Ok(if t.is_empty() {
                    Vec::new()
                } else {
                    vec![t.to_owned()]
                })
            }
            Some(Value::Array(_)) => {
                let mut out = Vec::new();
                for item in self.items()? {
                    if let Some(s) = item.opt_str()? {
                        out.push(s);
                    }
                }
                Ok(out)
            }
            Some(other) => Err(invalid(
                &self.path,
                format!("expected a list of text, got {}", kind_of(other)),
            )),
        }
    }

    /// A `Map<String,String>` (e.g. `properties`); values given as their text. Absent reads as empty.
    pub fn str_map(&self) -> Result<BTreeMap<String, String>, IpamError> {
        match self.value {
            None => Ok(BTreeMap::new()),
            Some(Value::Object(o)) => Ok(o
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), text)
                })
                .collect()),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(BTreeMap::new()),
            Some(Value::String(s)) => {
                let parsed: Value = serde_json::from_str(s)
                    .map_err(|_| invalid(&self.path, "expected an object"))?;
                if !parsed.is_object() {
                    return Err(invalid(&self.path, "expected an object"));
                }
                Field {
                    value: Some(&parsed),
                    path: self.path.clone(),
                }
                .str_map()
            }
            Some(other) => Err(invalid(
                &self.path,
                format!("expected an object, got {}", kind_of(other)),
            )),
        }
    }
}

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

/// An IP address, or a 400 naming `field`.
pub fn ip(field: &str, text: &str) -> Result<IpAddr, IpamError> {
    text.trim()
        .parse()
        .map_err(|_| IpamError::invalid(field, format!("'{text}' is not an IP address")))
}

/// An owner, or a 400 naming `field`.
pub fn owner(field: &str, text: &str) -> Result<Owner, IpamError> {
    Owner::parse(text).map_err(|why| IpamError::invalid(field, why))
}

/// A MAC address, or a 400 naming `field`.
pub fn mac(field: &str, text: &str) -> Result<Mac, IpamError> {
    Mac::parse(text).map_err(|why| IpamError::invalid(field, why))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    fn field_of(v: &Value) -> Field<'_> {
        Field::root(v).expect("object")
    }

    #[test]
    fn numbers_and_booleans_read_from_text_or_native() {
        let v = json!({"a": "3", "b": 3, "c": 3.0, "d": " 7 ", "t": "True", "f": false, "one": 1, "e": ""});
        let f = field_of(&v);
        for k in ["a", "b", "c"] {
            assert_eq!(f.get(k).opt_u64().expect(k), Some(3));
        }
        assert_eq!(f.get("d").opt_u64().expect("d"), Some(7));
        assert_eq!(
            f.get("e").opt_u64().expect("e"),
            None,
            "empty text is absent"
        );
        assert_eq!(f.get("t").opt_bool().expect("t"), Some(true));
        assert_eq!(f.get("f").opt_bool().expect("f"), Some(false));
        assert_eq!(f.get("one").opt_bool().expect("one"), Some(true));
        assert_eq!(f.get("missing").opt_bool().expect("missing"), None);
    }

    #[test]
    fn errors_name_the_full_path() {
        let v = json!({"ipAllocations": [{"size": "1"}, {"size": "many", "ipRangeIds": [{}]}]});
        let f = field_of(&v);
        let items = f.get("ipAllocations").items().expect("items");
        let e = items[1].get("size").opt_u64().expect_err("bad size");
        assert!(
            matches!(&e, IpamError::InvalidInput { field, why } if field == "ipAllocations[1].size" && why.contains("'many'")),
            "{e}"
        );
        let e = items[1]
            .get("ipRangeIds")
            .str_list()
            .expect_err("object in list");
        assert!(
            matches!(&e, IpamError::InvalidInput { field, .. } if field == "ipAllocations[1].ipRangeIds[0]"),
            "{e}"
        );
        let e = f
            .get("ipAllocations")
            .str_map()
            .expect_err("list is no map");
        assert!(matches!(&e, IpamError::InvalidInput { field, .. } if field == "ipAllocations"));
    }

    #[test]
    fn lists_accept_one_value_or_json_text() {
        let v = json!({"one": "r1", "json": "[\"r1\", \"r2\"]", "list": ["r1", null, 2]});
        let f = field_of(&v);
        assert_eq!(f.get("one").str_list().expect("one"), vec!["r1"]);
        assert_eq!(f.get("json").str_list().expect("json"), vec!["r1", "r2"]);
        assert_eq!(f.get("list").str_list().expect("list"), vec!["r1", "2"]);
        assert!(f.get("absent").str_list().expect("absent").is_empty());
    }

    #[test]
    fn null_reads_as_absent_and_root_must_be_an_object() {
        let v = json!({"owner": null});
        assert_eq!(field_of(&v).get("owner").opt_str().expect("null"), None);
        assert!(Field::root(&json!([1])).is_err());
    }

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
}
