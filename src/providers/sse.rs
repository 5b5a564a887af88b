//! A minimal Server-Sent Events parser for upstream streams (`event:` / `data:` lines).
//!
//! Events are cut out of the bytes as received: a `data:` line inside one received piece
//! becomes a slice of it, not a copy, and the OpenAI pass-through forwards that slice.
//! Only a line split across two pieces is copied (to join it).

use bytes::Bytes;

/// One SSE event: its optional `event:` name and its joined `data:` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event: Option<String>,
    /// Always valid UTF-8 (the parser replaces invalid sequences, as `from_utf8_lossy`).
    pub data: Bytes,
}

/// Incremental parser: feed it bytes as they arrive, take out whole events.
#[derive(Debug, Default)]
pub struct Parser {
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
    event: Option<String>,
    data: Vec<Bytes>,
}

impl Parser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next received piece and returns every event it completes.
    pub fn push(&mut self, bytes: Bytes) -> Vec<Event> {
        let piece = if self.partial.is_empty() {
            bytes
        } else {
            self.partial.extend_from_slice(&bytes);
            Bytes::from(std::mem::take(&mut self.partial))
        };
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(pos) = memchr::memchr(b'\n', &piece[start..]) {
            let end = start + pos;
            let line_end = if end > start && piece[end - 1] == b'\r' {
                end - 1
            } else {
                end
            };
            self.line(&piece, start, line_end, &mut out);
            start = end + 1;
        }
        self.partial.extend_from_slice(&piece[start..]);
        out
    }

    /// Ends the input: a last event without its blank line still counts.
    pub fn finish(&mut self) -> Option<Event> {
        if !self.partial.is_empty() {
            let rest = Bytes::from(std::mem::take(&mut self.partial));
            let end = rest.len() - usize::from(rest.ends_with(b"\r"));
            let mut out = Vec::new();
            self.line(&rest, 0, end, &mut out);
            if let Some(e) = out.pop() {
                return Some(e);
            }
        }
        self.dispatch()
    }

    /// The line `piece[start..end]` (without its line break).
    fn line(&mut self, piece: &Bytes, start: usize, end: usize, out: &mut Vec<Event>) {
        let line = &piece[start..end];
        match line.first() {
            None => {
                if let Some(e) = self.dispatch() {
                    out.push(e);
                }
                return;
            }
            Some(b':') => return, // comment / keep-alive
            Some(_) => {}
        }
        let (field, value_start) = match memchr::memchr(b':', line) {
            Some(colon) => {
                let space = usize::from(line.get(colon + 1) == Some(&b' '));
                (&line[..colon], start + colon + 1 + space)
            }
            None => (line, end),
        };
        match field {
            b"event" => {
                self.event = Some(String::from_utf8_lossy(&piece[value_start..end]).into_owned())
            }
            b"data" => self.data.push(utf8(piece.slice(value_start..end))),
            _ => {}
        }
    }

    fn dispatch(&mut self) -> Option<Event> {
        if self.data.is_empty() {
            self.event = None;
            return None;
        }
        let mut lines = std::mem::take(&mut self.data);
        // One `data:` line (nearly every event) is the data as it is, without a join.
        let data = if lines.len() == 1 {
            lines.pop().unwrap_or_default()
        } else {
            Bytes::from(lines.join(&b'\n'))
        };
        Some(Event {
            event: self.event.take(),
            data,
        })
    }
}

/// `bytes` if it is valid UTF-8, else a copy with invalid sequences replaced.
fn utf8(bytes: Bytes) -> Bytes {
    match std::str::from_utf8(&bytes) {
        Ok(_) => bytes,
        Err(_) => Bytes::from(String::from_utf8_lossy(&bytes).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_pushes_are_joined() {
        let mut p = Parser::new();
        assert!(p
            .push(Bytes::from_static(b"event: message_start\ndata: {\"a\""))
            .is_empty());
        let ev = p.push(Bytes::from_static(b":1}\n\ndata: [DONE]\r\n\r\n"));
        assert_eq!(
            ev,
            vec![
                Event {
                    event: Some("message_start".into()),
                    data: "{\"a\":1}".into()
                },
                Event {
                    event: None,
                    data: "[DONE]".into()
                }
            ]
        );
    }

    #[test]
    fn data_inside_one_piece_is_a_slice_of_it_and_fields_parse_without_a_space() {
        let piece = Bytes::from_static(b"data:{\"a\":1}\r\n\nevent:ping\ndata: x\n\n");
        let ev = Parser::new().push(piece.clone());
        assert_eq!(ev.len(), 2);
        assert_eq!(&ev[0].data[..], b"{\"a\":1}");
        let within = piece.as_ptr_range();
        assert!(
            within.contains(&ev[0].data.as_ptr()),
            "the event's data points into the received piece"
        );
        assert_eq!(ev[1].event.as_deref(), Some("ping"));
        assert_eq!(&ev[1].data[..], b"x");
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let all: &[u8] = "event: a\r\ndata: {\"t\":\"caf\u{e9} \u{1f600}\"}\n\n: keep-alive\n\ndata: x\ndata:y\n\ndata: [DONE]\n\n".as_bytes();
        let whole = Parser::new().push(Bytes::copy_from_slice(all));
        assert_eq!(whole.len(), 3);
        for cut in 0..=all.len() {
            let mut p = Parser::new();
            let mut got = p.push(Bytes::copy_from_slice(&all[..cut]));
            got.extend(p.push(Bytes::copy_from_slice(&all[cut..])));
            assert_eq!(got, whole, "split at {cut}");
        }
    }

    #[test]
    fn multi_line_data_is_joined_and_invalid_utf8_is_replaced() {
        let mut p = Parser::new();
        let ev = p.push(Bytes::from_static(b"data: a\ndata: b\n\ndata: \xff!\n\n"));
        let data: Vec<&[u8]> = ev.iter().map(|e| &e.data[..]).collect();
        assert_eq!(data, vec![&b"a\nb"[..], "\u{fffd}!".as_bytes()]);
    }

    #[test]
    fn comments_are_skipped_and_unterminated_last_event_is_kept() {
        let mut p = Parser::new();
        assert!(p.push(Bytes::from_static(b": ping\n\ndata: x")).is_empty());
        assert_eq!(p.finish().map(|e| e.data), Some(Bytes::from_static(b"x")));
    }
}
