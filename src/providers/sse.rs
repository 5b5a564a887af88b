//! A minimal Server-Sent Events parser for upstream streams (`event:` / `data:` lines).

/// One SSE event: its optional `event:` name and its joined `data:` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event: Option<String>,
    pub data: String,
}

/// Incremental parser: feed it bytes as they arrive, take out whole events.
#[derive(Debug, Default)]
pub struct Parser {
    buf: Vec<u8>,
    event: Option<String>,
    data: Vec<String>,
}

impl Parser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes and returns every event completed by them.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Event> {
        self.buf.extend_from_slice(bytes);
        // Lines are read in place (no copy of each line): the buffer is taken out while
        // `line` updates the rest of the parser, and its unread tail put back.
        let buf = std::mem::take(&mut self.buf);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(pos) = memchr::memchr(b'\n', &buf[start..]) {
            let end = start + pos;
            let mut line = &buf[start..end];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            start = end + 1;
            match std::str::from_utf8(line) {
                Ok(text) => self.line(text, &mut out),
                Err(_) => self.line(&String::from_utf8_lossy(line), &mut out),
            }
        }
        self.buf = buf;
        self.buf.drain(..start);
        out
    }

    /// Ends the input: a last event without its blank line still counts.
    pub fn finish(&mut self) -> Option<Event> {
        if !self.buf.is_empty() {
            let rest = String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned();
            let mut out = Vec::new();
            self.line(rest.trim_end_matches('\r'), &mut out);
            if let Some(e) = out.pop() {
                return Some(e);
            }
        }
        self.dispatch()
    }

    fn line(&mut self, line: &str, out: &mut Vec<Event>) {
        if line.is_empty() {
            if let Some(e) = self.dispatch() {
                out.push(e);
            }
            return;
        }
        if line.starts_with(':') {
            return; // comment / keep-alive
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => self.data.push(value.to_owned()),
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
            lines.join("\n")
        };
        Some(Event {
            event: self.event.take(),
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_pushes_are_joined() {
        let mut p = Parser::new();
        assert!(p.push(b"event: message_start\ndata: {\"a\"").is_empty());
        let ev = p.push(b":1}\n\ndata: [DONE]\r\n\r\n");
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
    fn multi_line_data_is_joined_and_invalid_utf8_is_replaced() {
        let mut p = Parser::new();
        let ev = p.push(b"data: a\ndata: b\n\ndata: \xff!\n\n");
        let data: Vec<&str> = ev.iter().map(|e| e.data.as_str()).collect();
        assert_eq!(data, vec!["a\nb", "\u{fffd}!"]);
    }

    #[test]
    fn comments_are_skipped_and_unterminated_last_event_is_kept() {
        let mut p = Parser::new();
        assert!(p.push(b": ping\n\ndata: x").is_empty());
        assert_eq!(p.finish().map(|e| e.data), Some("x".to_owned()));
    }
}
