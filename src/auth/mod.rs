//! Reads the caller's API key from the request headers LiteLLM accepts.

pub mod secret_box;

use axum::http::header::{HeaderName, AUTHORIZATION};
use axum::http::HeaderMap;

/// The other headers a key may come in, by name: a lookup by string parses the name
/// first, on every request.
pub const KEY_HEADERS: [HeaderName; 3] = [
    HeaderName::from_static("x-litellm-api-key"),
    HeaderName::from_static("api-key"),
    HeaderName::from_static("x-api-key"),
];

/// The key from `Authorization: Bearer`, `x-litellm-api-key`, `api-key` or `x-api-key`.
pub fn api_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        let key = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .unwrap_or(v)
            .trim();
        if !key.is_empty() {
            return Some(key);
        }
    }
    KEY_HEADERS
        .iter()
        .find_map(|h| headers.get(h).and_then(|v| v.to_str().ok()))
        .map(|v| v.trim_start_matches("Bearer ").trim())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_litellm_key_header_is_accepted() {
        for (h, v) in [
            ("authorization", "Bearer sk-1"),
            ("x-litellm-api-key", "sk-1"),
            ("api-key", "sk-1"),
            ("x-api-key", "sk-1"),
        ] {
            let mut m = HeaderMap::new();
            m.insert(h, v.parse().unwrap());
            assert_eq!(api_key(&m), Some("sk-1"), "{h}");
        }
        assert_eq!(api_key(&HeaderMap::new()), None);
    }
}
