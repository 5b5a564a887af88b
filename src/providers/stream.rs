//! The stream type every adapter returns, and the loop that feeds upstream SSE into a
//! per-format translator.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::sse::{Event, Parser};
use super::{Error, Usage};

/// One item of a translated stream.
#[derive(Debug, Clone)]
pub enum StreamItem {
    /// One OpenAI chunk object serialized as JSON, without `data: ` framing.
    Chunk(Bytes),
    /// The upstream's usage, with the OpenAI usage-only chunk that carries it. The proxy
    /// forwards the chunk only when the client asked for `stream_options.include_usage`.
    Usage { usage: Usage, chunk: Bytes },
}

pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<StreamItem, Error>> + Send>>;

/// Turns upstream SSE events into stream items. `Ok(true)` from `on_event` ends the stream.
pub trait Translator: Send + 'static {
    fn on_event(&mut self, event: &Event, out: &mut Vec<StreamItem>) -> Result<bool, Error>;
    /// Called once the upstream body has ended, for a translator that must flush state.
    fn on_end(&mut self, _out: &mut Vec<StreamItem>) -> Result<(), Error> {
        Ok(())
    }
}

/// Drives `translator` over the SSE body of `resp`. Dropping the returned stream drops
/// the upstream response, which closes the upstream connection (cancellation).
pub fn from_sse<T: Translator>(
    provider: &'static str,
    resp: super::UpstreamResponse,
    translator: T,
) -> ChunkStream {
    struct State<T> {
        body: super::http::BodyStream,
        parser: Parser,
        translator: T,
        pending: std::collections::VecDeque<StreamItem>,
        error: Option<Error>,
        done: bool,
    }
    let state = State {
        body: resp.bytes_stream(),
        parser: Parser::new(),
        translator,
        pending: Default::default(),
        error: None,
        done: false,
    };
    Box::pin(futures_util::stream::unfold(
        state,
        move |mut st| async move {
            loop {
                if let Some(item) = st.pending.pop_front() {
                    return Some((Ok(item), st));
                }
                if let Some(e) = st.error.take() {
                    return Some((Err(e), st));
                }
                if st.done {
                    return None;
                }
                let mut out = Vec::new();
                let events = match st.body.next().await {
                    Some(Ok(bytes)) => st.parser.push(bytes),
                    Some(Err(e)) => {
                        st.done = true;
                        st.error = Some(Error::connection(provider, &e));
                        continue;
                    }
                    None => {
                        st.done = true;
                        st.parser.finish().into_iter().collect()
                    }
                };
                for ev in &events {
                    match st.translator.on_event(ev, &mut out) {
                        Ok(false) => {}
                        Ok(true) => {
                            st.done = true;
                            break;
                        }
                        Err(e) => {
                            st.done = true;
                            st.error = Some(e);
                            break;
                        }
                    }
                }
                if st.done && st.error.is_none() {
                    if let Err(e) = st.translator.on_end(&mut out) {
                        st.error = Some(e);
                    }
                }
                st.pending.extend(out);
            }
        },
    ))
}
