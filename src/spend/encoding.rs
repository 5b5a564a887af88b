//! The stored form of a spend row: a compact binary record (version byte, then every
//! field in a fixed order, lengths and integers as LEB128 varints).
//!
//! Rows are the bulk of the store and each is written once per request, so the form is
//! chosen for size and encoding cost: about a third of the row's JSON, and no field names
//! to write. Rows stored as JSON by earlier versions (they start with `{`) still decode.

use std::borrow::Cow;

use serde::de::Error as _;
use serde_json::Value;

use super::log::SpendRow;

/// First byte of a binary row; JSON rows start with `{`.
const VERSION_1: u8 = 1;

type DecodeResult<T> = Result<T, serde_json::Error>;

impl SpendRow<'_> {
    /// The stored form of this row.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(384);
        self.encode_into(&mut out);
        out
    }

    /// Appends the stored form of this row to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let mut w = Writer(out);
        w.0.push(VERSION_1);
        w.str(&self.request_id);
        w.str(&self.call_type);
        w.str(&self.api_key);
        w.opt_str(self.key_alias.as_deref());
        w.opt_str(self.user.as_deref());
        w.opt_str(self.team_id.as_deref());
        w.opt_str(self.end_user.as_deref());
        w.str(&self.model);
        w.str(&self.model_group);
        w.str(&self.model_id);
        w.str(&self.api_base);
        w.str(&self.custom_llm_provider);
        w.0.extend_from_slice(&self.spend.to_le_bytes());
        w.uint(self.prompt_tokens);
        w.uint(self.completion_tokens);
        w.uint(self.total_tokens);
        w.uint(self.cache_read_tokens);
        w.uint(self.cache_creation_tokens);
        w.0.push(u8::from(self.usage_estimated));
        w.str(&self.start_time);
        w.str(&self.end_time);
        w.opt_uint(self.ttft_ms);
        w.uint(self.duration_ms);
        w.str(&self.status);
        w.opt_str(self.error_class.as_deref());
        w.opt_str(self.error_message.as_deref());
        w.uint(u64::from(self.http_status));
        w.uint(self.request_tags.len() as u64);
        for tag in self.request_tags.iter() {
            w.str(tag);
        }
        w.json(&self.metadata);
        w.uint(u64::from(self.attempted_retries));
        w.uint(u64::from(self.attempted_fallbacks));
        w.0.push(u8::from(self.stream));
        w.opt_json(&self.messages);
        w.opt_json(&self.response);
    }

    /// Reads a stored row, binary or (from earlier versions) JSON.
    pub fn decode(bytes: &[u8]) -> DecodeResult<SpendRow<'static>> {
        match bytes.first() {
            Some(&VERSION_1) => decode_v1(&mut Reader(bytes.get(1..).unwrap_or_default())),
            Some(b'{') => serde_json::from_slice(bytes),
            Some(other) => Err(serde_json::Error::custom(format!(
                "unknown spend row format {other}"
            ))),
            None => Err(serde_json::Error::custom("empty spend row")),
        }
    }
}

fn decode_v1(r: &mut Reader<'_>) -> DecodeResult<SpendRow<'static>> {
    let row = SpendRow {
        request_id: r.str()?.into(),
        call_type: r.str()?.into(),
        api_key: r.str()?.into(),
        key_alias: r.opt_str()?.map(Cow::Owned),
        user: r.opt_str()?.map(Cow::Owned),
        team_id: r.opt_str()?.map(Cow::Owned),
        end_user: r.opt_str()?.map(Cow::Owned),
        model: r.str()?.into(),
        model_group: r.str()?.into(),
        model_id: r.str()?.into(),
        api_base: r.str()?.into(),
        custom_llm_provider: r.str()?.into(),
        spend: f64::from_le_bytes(r.array()?),
        prompt_tokens: r.uint()?,
        completion_tokens: r.uint()?,
        total_tokens: r.uint()?,
        cache_read_tokens: r.uint()?,
        cache_creation_tokens: r.uint()?,
        usage_estimated: r.bool()?,
        start_time: r.str()?,
        end_time: r.str()?,
        ttft_ms: r.opt_uint()?,
        duration_ms: r.uint()?,
        status: r.str()?.into(),
        error_class: r.opt_str()?.map(Cow::Owned),
        error_message: r.opt_str()?.map(Cow::Owned),
        http_status: r.narrow()?,
        request_tags: {
            let n = r.uint()?;
            // Each tag takes at least one byte: a count beyond what is left is corrupt.
            if n > r.0.len() as u64 {
                return Err(corrupt());
            }
            Cow::Owned((0..n).map(|_| r.str()).collect::<DecodeResult<_>>()?)
        },
        metadata: Cow::Owned(r.json()?),
        attempted_retries: r.narrow()?,
        attempted_fallbacks: r.narrow()?,
        stream: r.bool()?,
        messages: r.opt_json()?,
        response: r.opt_json()?,
    };
    if !r.0.is_empty() {
        return Err(serde_json::Error::custom(
            "trailing bytes after a spend row",
        ));
    }
    Ok(row)
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    /// LEB128: seven bits a byte, low first; the high bit marks more to come.
    fn uint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn str(&mut self, s: &str) {
        self.uint(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }

    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.0.push(1);
                self.str(s);
            }
            None => self.0.push(0),
        }
    }

    fn opt_uint(&mut self, v: Option<u64>) {
        match v {
            Some(v) => {
                self.0.push(1);
                self.uint(v);
            }
            None => self.0.push(0),
        }
    }

    fn json(&mut self, v: &Value) {
        // Written in place, then its length put in front: no buffer of its own.
        let start = self.0.len();
        if serde_json::to_writer(&mut *self.0, v).is_err() {
            // `Value` always serializes; an empty text would decode as an error, not as
            // data.
            self.0.truncate(start);
            self.0.extend_from_slice(b"null");
        }
        let text_len = self.0.len() - start;
        self.uint(text_len as u64);
        let len_bytes = self.0.len() - start - text_len;
        self.0[start..].rotate_right(len_bytes);
    }

    fn opt_json(&mut self, v: &Option<Value>) {
        match v {
            Some(v) => {
                self.0.push(1);
                self.json(v);
            }
            None => self.0.push(0),
        }
    }
}

struct Reader<'a>(&'a [u8]);

fn corrupt() -> serde_json::Error {
    serde_json::Error::custom("truncated or corrupt spend row")
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64) -> DecodeResult<&'a [u8]> {
        let n = usize::try_from(n).map_err(|_| corrupt())?;
        if n > self.0.len() {
            return Err(corrupt());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self) -> DecodeResult<u8> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> DecodeResult<[u8; N]> {
        self.take(N as u64)?.try_into().map_err(|_| corrupt())
    }

    fn uint(&mut self) -> DecodeResult<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(corrupt())
    }

    fn narrow<T: TryFrom<u64>>(&mut self) -> DecodeResult<T> {
        T::try_from(self.uint()?).map_err(|_| corrupt())
    }

    fn bool(&mut self) -> DecodeResult<bool> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(corrupt()),
        }
    }

    fn present(&mut self) -> DecodeResult<bool> {
        self.bool()
    }

    fn str(&mut self) -> DecodeResult<String> {
        let n = self.uint()?;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| corrupt())
    }

    fn opt_str(&mut self) -> DecodeResult<Option<String>> {
        if self.present()? {
            self.str().map(Some)
        } else {
            Ok(None)
        }
    }

    fn opt_uint(&mut self) -> DecodeResult<Option<u64>> {
        if self.present()? {
            self.uint().map(Some)
        } else {
            Ok(None)
        }
    }

    fn json(&mut self) -> DecodeResult<Value> {
        let n = self.uint()?;
        serde_json::from_slice(self.take(n)?)
    }

    fn opt_json(&mut self) -> DecodeResult<Option<Value>> {
        if self.present()? {
            self.json().map(Some)
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn full_row() -> SpendRow<'static> {
        SpendRow {
            request_id: "chatcmpl-1".into(),
            call_type: "acompletion".into(),
            api_key: "ab".repeat(32).into(),
            key_alias: Some("team-a key".into()),
            user: Some("u1".into()),
            team_id: None,
            end_user: Some("customer-ü".into()),
            model: "gpt".into(),
            model_group: "gpt".into(),
            model_id: "d1".into(),
            api_base: "https://api.openai.com/v1".into(),
            custom_llm_provider: "openai".into(),
            spend: 0.000_123_456_789,
            prompt_tokens: 300,
            completion_tokens: u64::MAX,
            total_tokens: 0,
            cache_read_tokens: 128,
            cache_creation_tokens: 1,
            usage_estimated: true,
            start_time: "2026-11-24T10:00:00.000Z".into(),
            end_time: "2026-11-24T10:00:01.250Z".into(),
            ttft_ms: Some(42),
            duration_ms: 1250,
            status: "failure".into(),
            error_class: Some("RateLimitError".into()),
            error_message: Some("slow down".into()),
            http_status: 429,
            request_tags: vec!["prod".into(), String::new(), "a,b".into()].into(),
            metadata: Cow::Owned(json!({"tags": ["prod"], "n": 1.5, "nested": {"x": null}})),
            attempted_retries: 2,
            attempted_fallbacks: 1,
            stream: true,
            messages: Some(json!([{"role": "user", "content": "hi"}])),
            response: None,
        }
    }

    #[test]
    fn every_field_round_trips_and_the_binary_form_is_much_smaller_than_json() {
        let row = full_row();
        let bytes = row.encode();
        assert_eq!(SpendRow::decode(&bytes).unwrap(), row);
        let json = serde_json::to_vec(&row).unwrap();
        assert!(
            bytes.len() * 2 < json.len(),
            "{} vs {}",
            bytes.len(),
            json.len()
        );
        let empty = SpendRow::default();
        assert_eq!(SpendRow::decode(&empty.encode()).unwrap(), empty);
        // JSON longer than one length byte holds (and than two), before other fields.
        for n in [100, 20_000] {
            let long = SpendRow {
                metadata: Cow::Owned(json!({ "note": "x".repeat(n) })),
                messages: Some(json!(["y".repeat(n)])),
                ..full_row()
            };
            assert_eq!(SpendRow::decode(&long.encode()).unwrap(), long, "{n}");
        }
    }

    #[test]
    fn rows_stored_as_json_by_earlier_versions_still_decode() {
        let row = full_row();
        let json = serde_json::to_vec(&row).unwrap();
        assert_eq!(SpendRow::decode(&json).unwrap(), row);
    }

    #[test]
    fn truncated_corrupt_or_unknown_rows_are_errors_not_panics() {
        let bytes = full_row().encode();
        for cut in 0..bytes.len() {
            assert!(SpendRow::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(SpendRow::decode(&longer).is_err());
        assert!(SpendRow::decode(&[9, 1, 2]).is_err());
        // A huge tag count must not allocate or loop: it is refused as corrupt.
        let mut huge = vec![VERSION_1];
        let mut w = Writer(&mut huge);
        for _ in 0..3 {
            w.str("");
        }
        for _ in 0..4 {
            w.opt_str(None);
        }
        for _ in 0..5 {
            w.str("");
        }
        w.0.extend_from_slice(&0f64.to_le_bytes());
        for _ in 0..5 {
            w.uint(0);
        }
        w.0.push(0);
        w.str("");
        w.str("");
        w.opt_uint(None);
        w.uint(0);
        w.str("success");
        w.opt_str(None);
        w.opt_str(None);
        w.uint(200);
        w.uint(u64::MAX);
        let e = SpendRow::decode(&huge).unwrap_err();
        assert!(e.to_string().contains("corrupt"), "{e}");
    }
}
