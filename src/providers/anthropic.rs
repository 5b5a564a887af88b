//! Anthropic Messages API: translates OpenAI chat requests to `/v1/messages` and the
//! answers (whole or streamed) back to OpenAI's shape.

use super::{CallContext, ChunkStream, Completion, Error};

pub fn build(ctx: &CallContext<'_>, _stream: bool) -> Result<reqwest::RequestBuilder, Error> {
    Err(Error::invalid_request(
        "anthropic",
        format!("not implemented for {}", ctx.deployment.id),
    ))
}

pub fn parse(_ctx: &CallContext<'_>, _bytes: &[u8]) -> Result<Completion, Error> {
    Err(Error::bad_response("anthropic", "not implemented"))
}

pub fn stream(_ctx: &CallContext<'_>, _resp: reqwest::Response) -> ChunkStream {
    Box::pin(futures_util::stream::empty())
}
