//! The one loader of recorded HTTP exchanges (`fixtures/phpipam/`, `fixtures/infoblox/`): a
//! fixture by number (`"49"`) or file name, its request and its response, and that response as
//! a wiremock answer. What differs between the two recordings is the [`Recording`].

use std::marker::PhantomData;
use std::path::PathBuf;

use serde_json::Value;
use wiremock::ResponseTemplate;

/// A directory of recorded exchanges and how its answers are replayed.
pub trait Recording {
    /// Under `fixtures/`.
    const DIR: &'static str;
    /// For error messages: "phpIPAM", "Infoblox".
    const SYSTEM: &'static str;
    /// When the recorded response names no content type.
    const DEFAULT_CONTENT_TYPE: &'static str;
    /// Response headers replayed as recorded, besides the content type (phpIPAM: `Location`;
    /// Infoblox: `Set-Cookie`, the session the gateway must send back).
    const REPLAYED_HEADERS: &'static [&'static str];
}

fn dir<K: Recording>() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(K::DIR)
}

/// Every fixture file name of a recording, sorted.
pub fn all<K: Recording>() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir::<K>())
        .unwrap_or_else(|e| panic!("fixtures/{}: {e}", K::DIR))
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
}

/// A recorded exchange.
#[derive(Debug, Clone)]
pub struct Exchange<K> {
    pub name: String,
    pub raw: Value,
    recording: PhantomData<K>,
}

impl<K: Recording> Exchange<K> {
    /// By number (`"49"`) or file name.
    pub fn load(which: &str) -> Self {
        let prefix = format!("{}-", which.trim_end_matches(".json"));
        let entry = all::<K>()
            .into_iter()
            .find(|n| n == which || n.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no {} fixture {which}", K::SYSTEM));
        let text = std::fs::read_to_string(dir::<K>().join(&entry)).expect("read fixture");
        Exchange {
            name: entry,
            raw: serde_json::from_str(&text).expect("fixture JSON"),
            recording: PhantomData,
        }
    }

    /// Where the exchange comes from (Infoblox fixtures name their source).
    pub fn source(&self) -> &str {
        self.raw["source"].as_str().unwrap_or_default()
    }

    pub fn method(&self) -> &str {
        self.raw["request"]["method"].as_str().expect("method")
    }

    /// The request path and query as sent.
    pub fn target(&self) -> &str {
        self.raw["request"]["path"].as_str().expect("path")
    }

    /// Request path without the query string.
    pub fn path(&self) -> &str {
        let p = self.target();
        p.split('?').next().unwrap_or(p)
    }

    pub fn query(&self) -> Vec<(String, String)> {
        self.target()
            .split_once('?')
            .map(|(_, q)| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default()
    }

    pub fn request_header(&self, name: &str) -> Option<&str> {
        header_in(&self.raw["request"]["headers"], name)
    }

    pub fn request_body(&self) -> &Value {
        &self.raw["request"]["body"]
    }

    pub fn status(&self) -> u16 {
        u16::try_from(self.raw["response"]["status"].as_u64().expect("status")).expect("u16")
    }

    /// A response header.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.raw["response"]["headers"], name)
    }

    /// The response body as JSON (`Null` for raw bodies).
    pub fn body(&self) -> &Value {
        &self.raw["response"]["body"]
    }

    /// The response body as sent: the raw text, else the JSON.
    pub fn body_text(&self) -> String {
        match self.raw["response"]["body_raw"].as_str() {
            Some(raw) => raw.to_owned(),
            None => self.body().to_string(),
        }
    }

    pub fn content_type(&self) -> String {
        self.header("content-type")
            .unwrap_or(K::DEFAULT_CONTENT_TYPE)
            .to_owned()
    }

    /// The recorded answer: status, body, content type and the recording's replayed headers.
    pub fn response(&self) -> ResponseTemplate {
        let mut t = ResponseTemplate::new(self.status())
            .set_body_raw(self.body_text().into_bytes(), &self.content_type());
        for name in K::REPLAYED_HEADERS {
            if let Some(v) = self.header(name) {
                t = t.insert_header(*name, v);
            }
        }
        t
    }
}

fn header_in<'a>(headers: &'a Value, name: &str) -> Option<&'a str> {
    headers
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
}
