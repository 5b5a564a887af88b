//! Byte-level JSON scanning for the hot path: finding a few top-level values or string
//! ends without parsing the document into a tree.

/// Index of the quote closing the string whose contents start at `start`, skipping
/// escaped characters. The first bytes are read eight at a time (most JSON keys and values
/// end within them, where `memchr`'s setup would cost more than it saves); longer strings
/// use `memchr`.
#[inline]
pub fn string_end(doc: &[u8], start: usize) -> Option<usize> {
    const SHORT: usize = 24;
    let mut i = start;
    let short_end = doc.len().min(start.saturating_add(SHORT));
    while i < short_end {
        match doc.get(i..i + 8) {
            Some(word) => {
                let word = u64::from_le_bytes(word.try_into().ok()?);
                let found = quote_or_backslash(word);
                if found == 0 {
                    i += 8;
                    continue;
                }
                i += (found.trailing_zeros() / 8) as usize;
            }
            // Fewer than eight bytes left: one at a time.
            None => {
                while i < doc.len() && doc[i] != b'"' && doc[i] != b'\\' {
                    i += 1;
                }
                if i >= doc.len() {
                    return None;
                }
            }
        }
        if doc[i] == b'"' {
            return Some(i);
        }
        i += 2;
    }
    loop {
        let off = memchr::memchr2(b'"', b'\\', doc.get(i..)?)?;
        i += off;
        if doc[i] == b'"' {
            return Some(i);
        }
        i += 2;
    }
}

/// The high bit set in each byte of `word` that is `"` or `\`, and possibly in bytes
/// after the first such one: its lowest set bit marks the first exactly.
pub(crate) fn quote_or_backslash(word: u64) -> u64 {
    zero_byte(word ^ (ONES * u64::from(b'"'))) | zero_byte(word ^ (ONES * u64::from(b'\\')))
}

/// The high bit set in each byte of `word` below 0x20 (JSON's control characters), with
/// the same caveat as [`quote_or_backslash`].
pub(crate) fn control(word: u64) -> u64 {
    word.wrapping_sub(ONES * 0x20) & !word & HIGHS
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit set in each zero byte of `x` (and possibly in bytes after the first).
fn zero_byte(x: u64) -> u64 {
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// The raw bytes of the values of `keys` in the top-level JSON object `doc`, where present.
/// Fails when `doc` is not one balanced object (strings and escapes honoured), so
/// truncated or non-JSON answers are refused instead of forwarded.
pub fn top_level_values<'a, const N: usize>(
    doc: &'a [u8],
    keys: [&[u8]; N],
) -> Result<[Option<&'a [u8]>; N], &'static str> {
    let start = doc
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .ok_or("empty answer")?;
    if doc[start] != b'{' {
        return Err("the answer is not a JSON object");
    }
    // Inside the top-level object, before its first key.
    let mut depth = 1usize;
    let mut i = start + 1;
    let mut found: [Option<&[u8]>; N] = [None; N];
    // Which key the value being scanned at depth 1 belongs to, and where it starts.
    let mut value_start: Option<(usize, usize)> = None;
    let mut expect_key = true;
    while i < doc.len() {
        match doc[i] {
            b'"' => {
                let s = i + 1;
                i = string_end(doc, s).ok_or("unterminated string in the answer")?;
                if depth == 1 && expect_key {
                    expect_key = false;
                    let mut j = i + 1;
                    while j < doc.len() && doc[j].is_ascii_whitespace() {
                        j += 1;
                    }
                    if doc.get(j) != Some(&b':') {
                        return Err("a key without a value in the answer");
                    }
                    if let Some(k) = keys.iter().position(|k| *k == &doc[s..i]) {
                        value_start = Some((k, j + 1));
                    }
                    i = j;
                }
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                if depth == 1 {
                    if let Some((k, v)) = value_start.take() {
                        found[k] = Some(&doc[v..i]);
                    }
                }
                depth = depth
                    .checked_sub(1)
                    .ok_or("unbalanced brackets in the answer")?;
                if depth == 0 {
                    let rest = &doc[i + 1..];
                    if !rest.iter().all(u8::is_ascii_whitespace) {
                        return Err("trailing data after the answer");
                    }
                    return Ok(found);
                }
            }
            b',' if depth == 1 => {
                if let Some((k, v)) = value_start.take() {
                    found[k] = Some(&doc[v..i]);
                }
                expect_key = true;
            }
            _ => {}
        }
        i += 1;
    }
    Err("the answer ends before its closing brace")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_ends_found_at_every_offset_of_a_word() {
        for len in 0..40 {
            for pad in 0..9 {
                let mut doc = "x".repeat(pad);
                doc.push_str(&"a".repeat(len));
                doc.push_str("\" tail");
                assert_eq!(string_end(doc.as_bytes(), pad), Some(pad + len), "{doc}");
                let escaped = format!("{}\\\"{}\" t", "a".repeat(len), "b".repeat(pad));
                assert_eq!(
                    string_end(escaped.as_bytes(), 0),
                    Some(len + 2 + pad),
                    "{escaped}"
                );
                let open = "a".repeat(len + pad);
                assert_eq!(string_end(open.as_bytes(), 0), None);
                assert_eq!(string_end(format!("{open}\\").as_bytes(), 0), None);
            }
        }
    }

    #[test]
    fn string_ends_skip_escapes_short_and_long() {
        let long = format!("{}\\\"{}\"", "a".repeat(40), "b".repeat(30));
        for (doc, want) in [
            (r#"abc" x"#.to_owned(), Some(3)),
            (r#"a\"b" x"#.to_owned(), Some(4)),
            (r#"a\\" x"#.to_owned(), Some(3)),
            (long.clone(), Some(long.len() - 1)),
            ("no end".to_owned(), None),
            ("ends on escape\\".to_owned(), None),
            (format!("{}\\", "x".repeat(40)), None),
        ] {
            assert_eq!(string_end(doc.as_bytes(), 0), want, "{doc}");
        }
    }
}
