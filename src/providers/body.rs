//! The client's request body as the bytes it came in, with its top-level members indexed.
//!
//! One pass over the bytes validates the JSON (as strictly as `serde_json` reading it into
//! a tree), finds each top-level member, and counts what the gateway estimates tokens
//! from. Values are parsed only when something reads them, and OpenAI-format upstreams
//! get the members copied through byte for byte. Building a JSON tree of every body,
//! dropping it and serializing it again cost more than the rest of the gateway's own work
//! on a small request, and grew with every message of a long conversation.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use super::scan;

/// Why a body was refused, worded for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    Empty,
    NotAnObject,
    Invalid(String),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Empty => f.write_str("Request body is empty; expected a JSON object"),
            BodyError::NotAnObject => f.write_str("Request body must be a JSON object"),
            BodyError::Invalid(e) => write!(f, "Invalid JSON in request body: {e}"),
        }
    }
}

/// One top-level member: where its key's text and its value sit in the body.
#[derive(Debug, Clone)]
struct Member {
    /// The key as written, between its quotes (escapes included).
    raw_key: Range<usize>,
    /// The key's text when it had escapes; otherwise it is the raw key.
    unescaped: Option<Box<str>>,
    value: Range<usize>,
    /// The length of the text in the value (see [`RequestBody::text_len`]).
    text_len: usize,
    /// The number of elements, when the value is an array.
    elements: Option<usize>,
}

impl Member {
    /// The key's text: the raw key in `body` unless it had escapes.
    fn key<'a>(&'a self, body: &'a [u8]) -> &'a [u8] {
        match &self.unescaped {
            Some(k) => k.as_bytes(),
            None => &body[self.raw_key.clone()],
        }
    }
}

/// A JSON object body, validated, kept as bytes.
#[derive(Debug, Clone)]
pub struct RequestBody {
    raw: Bytes,
    /// In the order written; a key given twice keeps its first place and its last value,
    /// as a JSON map read by the rest of the ecosystem does.
    members: Vec<Member>,
    /// The [`key_bit`]s of the members' keys: most lookups are of keys a body does not
    /// have (`user`, `metadata`, `fallbacks`, …), and this answers them without
    /// comparing against every member.
    key_bits: u64,
}

/// One of 64 bits for a key, from its length and end bytes; keys that share a bit are
/// told apart by comparing them.
fn key_bit(key: &[u8]) -> u64 {
    let (first, last) = match key {
        [] => (0, 0),
        [first, .., last] => (*first, *last),
        [only] => (*only, *only),
    };
    let mix = (key.len() as u32)
        .wrapping_mul(31)
        .wrapping_add(u32::from(first).wrapping_mul(7))
        .wrapping_add(u32::from(last));
    1 << (mix & 63)
}

impl RequestBody {
    /// Validates `raw` as one JSON object and indexes its members.
    pub fn parse(raw: Bytes) -> Result<Self, BodyError> {
        // Checked once for the whole body, which is faster than string by string; outside
        // strings, anything but ASCII is a syntax error anyway.
        if let Err(e) = std::str::from_utf8(&raw) {
            return Err(SyntaxError {
                what: "invalid unicode code point",
                at: e.valid_up_to(),
            }
            .explain(&raw));
        }
        let mut p = Parser::new(&raw);
        p.skip_ws();
        match p.peek() {
            None => return Err(BodyError::Empty),
            Some(b'{') => {}
            Some(_) => {
                // Valid JSON that is not an object, or no JSON at all: say which.
                p.value()
                    .and_then(|_| p.end())
                    .map_err(|e| e.explain(&raw))?;
                return Err(BodyError::NotAnObject);
            }
        }
        let members = p
            .top_object()
            .and_then(|m| p.end().map(|_| m))
            .map_err(|e| e.explain(&raw))?;
        let key_bits = members
            .iter()
            .fold(0, |bits, m| bits | key_bit(m.key(&raw)));
        Ok(RequestBody {
            raw,
            members,
            key_bits,
        })
    }

    /// The body of a JSON value built in code (health probes, tests); anything but an
    /// object gives an empty one.
    pub fn from_value(value: &Value) -> Self {
        let raw = Bytes::from(serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec()));
        match RequestBody::parse(raw) {
            Ok(body) => body,
            Err(_) => RequestBody {
                raw: Bytes::from_static(b"{}"),
                members: Vec::new(),
                key_bits: 0,
            },
        }
    }

    /// The bytes as the client sent them.
    pub fn bytes(&self) -> &Bytes {
        &self.raw
    }

    fn member(&self, key: &str) -> Option<&Member> {
        if self.key_bits & key_bit(key.as_bytes()) == 0 {
            return None;
        }
        self.members
            .iter()
            .find(|m| m.key(&self.raw) == key.as_bytes())
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.member(key).is_some()
    }

    /// The raw JSON text of `key`'s value.
    pub fn raw(&self, key: &str) -> Option<&[u8]> {
        self.member(key).map(|m| &self.raw[m.value.clone()])
    }

    /// `key`'s value read as `T`; `None` when absent or of another type.
    pub fn get<'a, T: Deserialize<'a>>(&'a self, key: &str) -> Option<T> {
        serde_json::from_slice(self.raw(key)?).ok()
    }

    /// `key`'s value as a JSON tree.
    pub fn value(&self, key: &str) -> Option<Value> {
        self.get(key)
    }

    /// `key`'s value when it is a string; borrowed unless it has escapes.
    pub fn str(&self, key: &str) -> Option<Cow<'_, str>> {
        let raw = self.raw(key)?;
        let inner = raw.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
        if inner.contains(&b'\\') {
            return self.get::<String>(key).map(Cow::Owned);
        }
        // The whole body was checked to be UTF-8.
        std::str::from_utf8(inner).ok().map(Cow::Borrowed)
    }

    /// `key`'s value when it is a non-empty string.
    pub fn non_empty_str(&self, key: &str) -> Option<String> {
        self.str(key).filter(|s| !s.is_empty()).map(Cow::into_owned)
    }

    /// `key`'s value when it is `true` or `false`.
    pub fn bool(&self, key: &str) -> Option<bool> {
        match self.raw(key)? {
            b"true" => Some(true),
            b"false" => Some(false),
            _ => None,
        }
    }

    /// `key`'s value when it is a whole number that fits a `u64`.
    pub fn u64(&self, key: &str) -> Option<u64> {
        std::str::from_utf8(self.raw(key)?).ok()?.parse().ok()
    }

    /// The whole body as a JSON tree, for adapters that translate it.
    pub fn to_value(&self) -> Value {
        serde_json::from_slice(&self.raw).unwrap_or(Value::Null)
    }

    /// Each member as (key text, key as written between its quotes, value as written).
    /// The key text is bytes: the whole body was checked to be UTF-8, and checking each
    /// key again cost more than the copy the proxy makes of it.
    pub fn members(&self) -> impl Iterator<Item = (&[u8], &[u8], &[u8])> {
        self.members.iter().map(|m| {
            (
                m.key(&self.raw),
                &self.raw[m.raw_key.clone()],
                &self.raw[m.value.clone()],
            )
        })
    }

    /// The length of the text in `key`'s value: every string value (not keys), unescaped,
    /// with an `image_url` member counted as 340 whatever it holds.
    pub fn text_len(&self, key: &str) -> usize {
        self.member(key).map_or(0, |m| m.text_len)
    }

    /// The number of elements when `key`'s value is an array.
    pub fn array_len(&self, key: &str) -> Option<usize> {
        self.member(key)?.elements
    }
}

/// What an `image_url` member counts for in [`RequestBody::text_len`]: images are not
/// text, so a fixed small amount.
const IMAGE_TEXT_LEN: usize = 340;

/// The deepest nesting (objects and arrays, the top level counted) `serde_json` reads.
const MAX_DEPTH: usize = 127;

/// A syntax error and where it is.
#[derive(Debug)]
struct SyntaxError {
    what: &'static str,
    at: usize,
}

impl SyntaxError {
    /// The error with its line and column, as `serde_json` words them.
    fn explain(self, doc: &[u8]) -> BodyError {
        let before = &doc[..self.at.min(doc.len())];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        let column = before.len()
            - before
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1)
            + 1;
        BodyError::Invalid(format!("{} at line {line} column {column}", self.what))
    }
}

type Parsed<T> = Result<T, SyntaxError>;

/// Bytes that end a run of plain string content: the quote, the backslash and the
/// control characters JSON does not allow raw.
static STRING_STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// A string as scanned: where its content is, whether it had escapes, its unescaped
/// length in bytes.
struct Scanned {
    content: Range<usize>,
    escaped: bool,
    len: usize,
}

/// A strict single-pass JSON reader over bytes already checked to be UTF-8.
struct Parser<'a> {
    b: &'a [u8],
    i: usize,
    depth: usize,
    /// The element count of the array read last.
    elements: usize,
}

impl<'a> Parser<'a> {
    fn new(b: &'a [u8]) -> Self {
        Parser {
            b,
            i: 0,
            depth: 0,
            elements: 0,
        }
    }

    fn err<T>(&self, what: &'static str) -> Parsed<T> {
        Err(SyntaxError { what, at: self.i })
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// Only whitespace may follow the document.
    fn end(&mut self) -> Parsed<()> {
        self.skip_ws();
        match self.peek() {
            None => Ok(()),
            Some(_) => self.err("trailing characters"),
        }
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Parsed<()> {
        self.skip_ws();
        if self.peek() == Some(byte) {
            self.i += 1;
            Ok(())
        } else if self.peek().is_none() {
            // Only objects expect a particular byte (a key's quote, a colon).
            self.err("EOF while parsing an object")
        } else {
            self.err(what)
        }
    }

    /// The top-level object, its members indexed.
    fn top_object(&mut self) -> Parsed<Vec<Member>> {
        let mut members: Vec<Member> = Vec::with_capacity(8);
        self.expect(b'{', "expected `{`")?;
        self.depth = 1;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(members);
        }
        loop {
            self.expect(b'"', "key must be a string")?;
            let key = self.string()?;
            self.expect(b':', "expected `:`")?;
            self.skip_ws();
            let start = self.i;
            let text_len = self.value()?;
            // `array` left its count when the value was one.
            let elements = (self.b[start] == b'[').then_some(self.elements);
            let member = Member {
                unescaped: self.unescaped(&key),
                raw_key: key.content,
                value: start..self.i,
                text_len,
                elements,
            };
            let b = self.b;
            match members.iter_mut().find(|m| m.key(b) == member.key(b)) {
                Some(first) => {
                    first.value = member.value;
                    first.text_len = member.text_len;
                    first.elements = member.elements;
                }
                None => members.push(member),
            }
            if !self.another_member()? {
                return Ok(members);
            }
        }
    }

    /// After an object's member: past the comma when another follows (`true`), past the
    /// closing brace when none does.
    fn another_member(&mut self) -> Parsed<bool> {
        self.skip_ws();
        match self.peek() {
            Some(b',') => {
                self.i += 1;
                self.no_trailing_comma(b'}')?;
                Ok(true)
            }
            Some(b'}') => {
                self.i += 1;
                Ok(false)
            }
            None => self.err("EOF while parsing an object"),
            Some(_) => self.err("expected `,` or `}`"),
        }
    }

    /// After a comma: the most common slip in hand-written JSON gets its own words.
    fn no_trailing_comma(&mut self, close: u8) -> Parsed<()> {
        self.skip_ws();
        if self.peek() == Some(close) {
            return self.err("trailing comma");
        }
        Ok(())
    }

    /// Reads one value; returns the length of the text in it.
    fn value(&mut self) -> Parsed<usize> {
        self.skip_ws();
        match self.peek() {
            None => self.err("EOF while parsing a value"),
            Some(b'"') => {
                self.i += 1;
                Ok(self.string()?.len)
            }
            Some(b'{') => self.nested(|p| p.object()),
            Some(b'[') => self.nested(|p| p.array()),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => self.err("expected value"),
        }
    }

    fn nested(&mut self, read: impl FnOnce(&mut Self) -> Parsed<usize>) -> Parsed<usize> {
        if self.depth >= MAX_DEPTH {
            return self.err("recursion limit exceeded");
        }
        self.depth += 1;
        self.i += 1;
        let len = read(self)?;
        self.depth -= 1;
        Ok(len)
    }

    /// After `{`.
    fn object(&mut self) -> Parsed<usize> {
        let mut len = 0;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(0);
        }
        loop {
            self.expect(b'"', "key must be a string")?;
            let key = self.string()?;
            let is_image = match self.unescaped(&key) {
                Some(text) => &*text == "image_url",
                None => &self.b[key.content] == b"image_url",
            };
            self.expect(b':', "expected `:`")?;
            let value_len = self.value()?;
            len += if is_image { IMAGE_TEXT_LEN } else { value_len };
            if !self.another_member()? {
                return Ok(len);
            }
        }
    }

    /// After `[`; leaves the element count in `elements`.
    fn array(&mut self) -> Parsed<usize> {
        let mut len = 0;
        let mut count = 0;
        self.skip_ws();
        if self.peek().is_none() {
            return self.err("EOF while parsing a list");
        }
        if self.peek() == Some(b']') {
            self.i += 1;
            self.elements = 0;
            return Ok(0);
        }
        loop {
            len += self.value()?;
            count += 1;
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    self.no_trailing_comma(b']')?;
                }
                Some(b']') => {
                    self.i += 1;
                    self.elements = count;
                    return Ok(len);
                }
                None => return self.err("EOF while parsing a list"),
                Some(_) => return self.err("expected `,` or `]`"),
            }
        }
    }

    fn literal(&mut self, word: &'static [u8]) -> Parsed<usize> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(0)
        } else if self.b.len() - self.i < word.len() && word.starts_with(&self.b[self.i..]) {
            self.i = self.b.len();
            self.err("EOF while parsing a value")
        } else {
            self.err("expected ident")
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, and finite as a float.
    fn number(&mut self) -> Parsed<usize> {
        let start = self.i;
        let digits = |p: &mut Self| {
            let from = p.i;
            while let Some(b'0'..=b'9') = p.peek() {
                p.i += 1;
            }
            p.i - from
        };
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.i += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return self.err("invalid number");
                }
            }
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return self.err("invalid number"),
        }
        let mut float = false;
        if self.peek() == Some(b'.') {
            self.i += 1;
            float = true;
            if digits(self) == 0 {
                return self.err("invalid number");
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            float = true;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if digits(self) == 0 {
                return self.err("invalid number");
            }
        }
        // A float (or an integer too long for 64 bits) must be finite as an f64, as
        // serde_json reads it.
        if float || self.i - start > 20 {
            let text = std::str::from_utf8(&self.b[start..self.i]).unwrap_or("");
            if !text.parse::<f64>().is_ok_and(f64::is_finite) {
                return Err(SyntaxError {
                    what: "number out of range",
                    at: start,
                });
            }
        }
        Ok(0)
    }

    /// After the opening quote; leaves `i` past the closing one.
    fn string(&mut self) -> Parsed<Scanned> {
        let start = self.i;
        let mut escaped = false;
        // Bytes the escapes took beyond what they stand for.
        let mut saved = 0usize;
        loop {
            // Eight bytes at a time; the lowest flagged byte of a word is where the run
            // ends. Fewer than eight left: one at a time below.
            while let Some(word) = self.b.get(self.i..self.i + 8) {
                let word = u64::from_le_bytes(word.try_into().unwrap_or([b'"'; 8]));
                let stops = scan::quote_or_backslash(word) | scan::control(word);
                if stops != 0 {
                    self.i += (stops.trailing_zeros() / 8) as usize;
                    break;
                }
                self.i += 8;
            }
            while self.i < self.b.len() && !STRING_STOP[self.b[self.i] as usize] {
                self.i += 1;
            }
            match self.peek() {
                None => return self.err("EOF while parsing a string"),
                Some(b'"') => {
                    let content = start..self.i;
                    self.i += 1;
                    let len = content.len() - saved;
                    return Ok(Scanned {
                        content,
                        escaped,
                        len,
                    });
                }
                Some(b'\\') => {
                    escaped = true;
                    saved += self.escape()?;
                }
                Some(_) => {
                    return self
                        .err("control character (\\u0000-\\u001F) found while parsing a string")
                }
            }
        }
    }

    /// The text of a string just scanned, when it had escapes (otherwise it is its raw
    /// content). Already validated, so it always decodes.
    fn unescaped(&self, s: &Scanned) -> Option<Box<str>> {
        s.escaped.then(|| {
            let literal = &self.b[s.content.start - 1..s.content.end + 1];
            serde_json::from_slice::<String>(literal)
                .unwrap_or_default()
                .into_boxed_str()
        })
    }

    /// At a backslash; reads the escape and returns how many bytes longer it is than the
    /// UTF-8 of the character it stands for.
    fn escape(&mut self) -> Parsed<usize> {
        self.i += 1;
        match self.peek() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.i += 1;
                Ok(1)
            }
            Some(b'u') => {
                self.i += 1;
                let first = self.hex4()?;
                match first {
                    0xDC00..=0xDFFF => self.err("lone trailing surrogate in hex escape"),
                    0xD800..=0xDBFF => {
                        if !self.b[self.i..].starts_with(b"\\u") {
                            return self.err("unexpected end of hex escape");
                        }
                        self.i += 2;
                        match self.hex4()? {
                            0xDC00..=0xDFFF => Ok(12 - 4),
                            _ => self.err("lone leading surrogate in hex escape"),
                        }
                    }
                    0..=0x7F => Ok(6 - 1),
                    0x80..=0x7FF => Ok(6 - 2),
                    _ => Ok(6 - 3),
                }
            }
            None => self.err("EOF while parsing a string"),
            Some(_) => self.err("invalid escape"),
        }
    }

    fn hex4(&mut self) -> Parsed<u32> {
        let Some(hex) = self.b.get(self.i..self.i + 4) else {
            self.i = self.b.len();
            return self.err("EOF while parsing a string");
        };
        let mut n = 0u32;
        for h in hex {
            let d = match h {
                b'0'..=b'9' => h - b'0',
                b'a'..=b'f' => h - b'a' + 10,
                b'A'..=b'F' => h - b'A' + 10,
                _ => return self.err("invalid escape"),
            };
            n = n * 16 + u32::from(d);
        }
        self.i += 4;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(text: &str) -> Result<RequestBody, BodyError> {
        RequestBody::parse(Bytes::from(text.to_owned()))
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        assert_eq!(body("").unwrap_err(), BodyError::Empty);
        assert_eq!(body(" \n").unwrap_err(), BodyError::Empty);
        assert_eq!(body("[1, 2]").unwrap_err(), BodyError::NotAnObject);
        assert_eq!(body("\"x\"").unwrap_err(), BodyError::NotAnObject);
        for bad in [
            "nope",
            "{\"model\": }",
            "{\"a\":1} x",
            "{\"a\":1",
            "{\"a\":\"\\q\"}",
        ] {
            match body(bad) {
                Err(BodyError::Invalid(e)) => assert!(!e.is_empty(), "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        let e = body("{\"a\":").unwrap_err().to_string();
        assert_eq!(
            e,
            "Invalid JSON in request body: EOF while parsing a value at line 1 column 6"
        );
        let e = body("{\n \"a\": tru }").unwrap_err().to_string();
        assert_eq!(
            e,
            "Invalid JSON in request body: expected ident at line 2 column 7"
        );
    }

    #[test]
    fn members_keep_their_bytes_and_order_and_a_repeated_key_its_last_value() {
        let b = body(r#" { "z" : 1.0 , "a":{"x": [1, 2]}, "z": 2.50, "e\u0073c": "v" } "#).unwrap();
        let got: Vec<(&[u8], &[u8], &[u8])> = b.members().collect();
        assert_eq!(
            got,
            vec![
                (&b"z"[..], &b"z"[..], &b"2.50"[..]),
                (b"a", b"a", br#"{"x": [1, 2]}"#),
                (b"esc", br"e\u0073c", br#""v""#),
            ]
        );
        assert_eq!(b.get::<f64>("z"), Some(2.5));
        assert_eq!(b.get::<String>("esc").as_deref(), Some("v"));
        assert!(b.contains_key("esc") && !b.contains_key("e\\u0073c"));
        assert_eq!(b.value("a"), Some(json!({"x": [1, 2]})));
        assert_eq!(b.get::<u64>("a"), None, "another type reads as absent");
        assert_eq!(b.raw("missing"), None);
    }

    #[test]
    fn lookups_find_every_key_present_and_none_absent_whatever_bits_they_share() {
        for n in [1usize, 2, 5, 64, 300] {
            let keys: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
            let text = keys
                .iter()
                .enumerate()
                .map(|(i, k)| format!("\"{k}\":{i}"))
                .collect::<Vec<_>>()
                .join(",");
            let b = body(&format!("{{{text}}}")).unwrap();
            for (i, k) in keys.iter().enumerate() {
                assert_eq!(b.u64(k), Some(i as u64), "{k} of {n}");
            }
            for absent in ["k", "user", "metadata", "fallbacks", "K0", "k0 ", ""] {
                assert_eq!(b.raw(absent), None, "{absent:?} of {n}");
            }
            assert_eq!(b.raw(&format!("k{n}")), None);
            // Absent keys that share a bit with a present one are compared, and missed.
            let sharing: Vec<String> = ('a'..='z')
                .filter(|c| *c != 'k')
                .flat_map(|c| (0..100).map(move |i| format!("{c}{i}")))
                .filter(|k| b.key_bits & key_bit(k.as_bytes()) != 0)
                .collect();
            assert!(!sharing.is_empty(), "{n}");
            for k in sharing {
                assert_eq!(b.raw(&k), None, "{k} of {n}");
            }
        }
    }

    #[test]
    fn escaped_keys_are_found_after_strings_holding_braces_and_commas() {
        let b = body(r#"{"a":"{,\"","q\"k":[",{"],"b":{"c\\":1}}"#).unwrap();
        let keys: Vec<(&[u8], &[u8])> = b.members().map(|(k, raw, _)| (k, raw)).collect();
        assert_eq!(
            keys,
            vec![(&b"a"[..], &b"a"[..]), (b"q\"k", br#"q\"k"#), (b"b", b"b")]
        );
    }

    /// The estimate this replaced, over a JSON tree: the oracle for `text_len`.
    fn tree_text_len(v: &Value) -> usize {
        match v {
            Value::String(s) => s.len(),
            Value::Array(items) => items.iter().map(tree_text_len).sum(),
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| {
                    if k == "image_url" {
                        340
                    } else {
                        tree_text_len(v)
                    }
                })
                .sum(),
            _ => 0,
        }
    }

    #[test]
    fn text_len_counts_as_the_tree_did() {
        let messages = json!([
            {"role": "system", "content": "be brief\n\t\"quoted\" é 😀"},
            {"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
            ], "name": null, "n": 3, "f": 1.5, "ok": true},
        ]);
        let b =
            RequestBody::from_value(&json!({"messages": messages, "prompt": "p\u{e9}", "n": 1}));
        assert_eq!(b.text_len("messages"), tree_text_len(&messages));
        assert_eq!(b.text_len("prompt"), 3);
        assert_eq!(b.text_len("n"), 0);
        assert_eq!(b.text_len("absent"), 0);
        // Escapes count as the characters they stand for.
        let b = body(r#"{"prompt": "a\nb\u00e9\ud83d\ude00"}"#).unwrap();
        assert_eq!(b.text_len("prompt"), "a\nbé😀".len());
    }

    #[test]
    fn array_len_counts_elements_of_arrays_only() {
        let b = body(r#"{"m": [ {"a": [1,2]}, "x", [] ], "e": [], "s": "[1]"}"#).unwrap();
        assert_eq!(b.array_len("m"), Some(3));
        assert_eq!(b.array_len("e"), Some(0));
        assert_eq!(b.array_len("s"), None);
        assert_eq!(b.array_len("absent"), None);
    }

    /// A small deterministic generator, so a failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// What reading `doc` into a tree says, in this module's terms.
    fn oracle(doc: &[u8]) -> Result<Value, BodyError> {
        if doc.iter().all(|b| b" \n\t\r".contains(b)) {
            return Err(BodyError::Empty);
        }
        match serde_json::from_slice::<Value>(doc) {
            Ok(v) if v.is_object() => Ok(v),
            Ok(_) => Err(BodyError::NotAnObject),
            Err(e) => Err(BodyError::Invalid(e.to_string())),
        }
    }

    fn agrees_with_the_tree(doc: &[u8]) {
        let shown = String::from_utf8_lossy(doc);
        match (RequestBody::parse(Bytes::copy_from_slice(doc)), oracle(doc)) {
            (Ok(b), Ok(tree)) => {
                let map = tree.as_object().unwrap();
                assert_eq!(b.members().count(), map.len(), "{shown}");
                for (k, _, raw) in b.members() {
                    let k = std::str::from_utf8(k).unwrap();
                    let v: Value = serde_json::from_slice(raw).unwrap();
                    assert_eq!(Some(&v), map.get(k), "{shown}: {k}");
                    assert_eq!(b.text_len(k), tree_text_len(&v), "{shown}: {k}");
                    assert_eq!(b.array_len(k), v.as_array().map(Vec::len), "{shown}: {k}");
                    if let Value::String(text) = &v {
                        assert_eq!(b.str(k).as_deref(), Some(text.as_str()), "{shown}");
                    }
                    assert_eq!(b.bool(k), v.as_bool(), "{shown}: {k}");
                    assert_eq!(b.u64(k), v.as_u64(), "{shown}: {k}");
                }
            }
            (Err(BodyError::Invalid(_)), Err(BodyError::Invalid(_))) => {}
            (Err(ours), Err(theirs)) => assert_eq!(ours, theirs, "{shown}"),
            (ours, theirs) => panic!("{shown}: ours {ours:?}, the tree's {theirs:?}"),
        }
    }

    #[test]
    fn accepts_and_refuses_exactly_what_serde_json_does() {
        let seeds: &[&[u8]] = &[
            br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true}"#,
            br#" {"a" : [1, -2.5e-3, 0, 1E+2, true, false, null, "x\"y\\z\/\b\f\n\r\t"], "b": {}} "#,
            br#"{"k\u00e9y": "\ud83d\ude00 caf\u00e9 \u0041", "n": 18446744073709551615, "m": -0}"#,
            br#"{"content":[{"type":"image_url","image_url":{"url":"data:x"}},{"text":"t"}],"e":[]}"#,
            "{\"u\": \"\u{e9}\u{1F600}\", \"big\": 123456789012345678901234567890}".as_bytes(),
            br#"{"dup": 1, "dup": [2, 3], "x": 1e400, "y": 1.7976931348623157e308}"#,
            br#"{"messages":[{"role":"user","content":"The quick brown fox jumps over the lazy dog; 0123456789 \n and again"}]}"#,
        ];
        for doc in seeds {
            agrees_with_the_tree(doc);
        }
        let alphabet = b"{}[]\",:\\u0123456789abcdefABCDEF.eE+- \n\ttrufalsn\x01\x0c\xc3\xa9\xff";
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let mut doc = seeds[rng.below(seeds.len())].to_vec();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(doc.len() + 1);
                match rng.below(4) {
                    0 if at < doc.len() => {
                        doc.remove(at);
                    }
                    1 if at < doc.len() => doc[at] = alphabet[rng.below(alphabet.len())],
                    2 => {
                        let end = (at + rng.below(8)).min(doc.len());
                        let piece = doc[at..end].to_vec();
                        doc.splice(at..at, piece);
                    }
                    _ => doc.insert(at, alphabet[rng.below(alphabet.len())]),
                }
            }
            agrees_with_the_tree(&doc);
        }
    }

    #[test]
    fn nesting_stops_where_serde_json_stops() {
        for depth in [126, 127, 128, 129, 200] {
            let doc = format!("{{\"a\":{}{}}}", "[".repeat(depth), "]".repeat(depth));
            agrees_with_the_tree(doc.as_bytes());
        }
    }
}
