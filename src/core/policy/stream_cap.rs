//! Ends a streamed answer cleanly at a namespace's output cap (`output_tokens`), for
//! providers that stream past the `max_tokens` they were given (or were not given one).
//!
//! The stream is read event by event (see [`crate::core::stream_rewrite`]), from the facts
//! the response tracker read in it. The completion text of each event (content, reasoning,
//! refusal and tool-call arguments for OpenAI Chat; text, thinking and tool input for
//! Anthropic Messages) is counted with the model's encoding; the event that would take the
//! count past the cap is not sent, and neither is anything after it. In its place the client
//! gets the ending the API defines for a length stop:
//!
//! - OpenAI Chat Completions: a chunk with `"finish_reason":"length"` for every choice seen,
//!   then `data: [DONE]`;
//! - Anthropic Messages: `content_block_stop` for an open block, `message_delta` with
//!   `"stop_reason":"max_tokens"` and the output tokens sent, and `message_stop`;
//! - OpenAI Responses: the `*.done` events of what is open (text, part, item with
//!   `"status":"incomplete"`), then `response.incomplete` with
//!   `"incomplete_details":{"reason":"max_output_tokens"}` (see [`responses`]). Its text is
//!   the `delta` of `*.delta` events (output text, refusal, reasoning, summaries, function
//!   call arguments, tool input), not `response.audio.delta` (base64 audio).
//!
//! A token is at least one byte, so text is only counted once its bytes could pass the cap;
//! then pieces are counted separately, which can only be a little above the exact count of
//! the whole text: the cut errs on the early side. Events below the cap pass byte for byte.

mod responses;

use serde_json::Value;

use crate::core::tokens::Encoding;
pub use crate::core::usage::StreamApi;
use crate::core::usage::{EventFacts, EventType, ResponsesEvent};
use responses::ResponsesState;

/// Text kept uncounted at most (it is counted then).
const UNCOUNTED_MAX: usize = 64 * 1024;

/// Largest event held back while incomplete. An event past it cannot be counted before it
/// would go out, so the stream ends there as at the cap (memory stays bounded, the cap
/// holds whatever the event's size).
pub const EVENT_MAX: usize = 1 << 20;

#[derive(Debug)]
pub struct StreamCap {
    cap: u64,
    api: StreamApi,
    enc: Encoding,
    /// Completion tokens of the text sent, counted.
    tokens: u64,
    /// Text sent but not counted yet: a token is at least one byte, so while the counted
    /// tokens plus these bytes stay within the cap there is no need to count.
    uncounted: String,
    ended: bool,
    /// The stream was ended at an event larger than [`EVENT_MAX`].
    oversized: bool,
    id: Option<String>,
    model: Option<String>,
    created: Option<u64>,
    /// OpenAI choice indexes seen.
    choices: Vec<u64>,
    /// Anthropic: the content block started and not yet stopped.
    open_block: Option<u64>,
    /// OpenAI Responses: what the ending closes.
    responses: Option<Box<ResponsesState>>,
    /// The request's prompt tokens, when the gateway counted them (Responses' ending
    /// reports them as `input_tokens`; 0 otherwise).
    prompt_tokens: Option<u64>,
}

impl StreamCap {
    pub fn new(cap: u64, api: StreamApi, enc: Encoding) -> StreamCap {
        StreamCap {
            cap,
            api,
            enc,
            tokens: 0,
            // the text of a usual stream without reallocating as it grows
            uncounted: String::with_capacity(1024),
            ended: false,
            oversized: false,
            id: None,
            model: None,
            created: None,
            choices: Vec::new(),
            open_block: None,
            responses: (api == StreamApi::Responses).then(Box::default),
            prompt_tokens: None,
        }
    }

    /// The request's prompt tokens, as the gateway counted them (for the usage of an
    /// ending that reports them).
    pub fn set_prompt_tokens(&mut self, tokens: Option<u64>) {
        self.prompt_tokens = tokens;
    }

    pub fn api(&self) -> StreamApi {
        self.api
    }

    /// Whether the stream was ended at the cap (everything fed since is dropped).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Whether the stream was ended at an event too large to hold ([`EVENT_MAX`]).
    pub fn oversized(&self) -> bool {
        self.oversized
    }

    /// Whether the ending still lacks the stream's id, model and creation time.
    pub fn wants_head(&self) -> bool {
        self.api != StreamApi::OpenAiChat || self.id.is_none()
    }

    /// Completion tokens of what was sent.
    pub fn tokens_sent(&self) -> u64 {
        self.tokens + self.enc.count(&self.uncounted)
    }

    /// Whether an event, read into `facts`, may go out (counting its completion text).
    pub fn pass(&mut self, facts: &EventFacts) -> bool {
        if !facts.object {
            return true; // [DONE], comments, pings
        }
        match self.api {
            StreamApi::OpenAiChat => {
                if self.id.is_none() && facts.id.is_some() {
                    self.id.clone_from(&facts.id);
                    self.model.clone_from(&facts.model);
                    self.created = facts.created;
                }
                for i in &facts.indexes {
                    if !self.choices.contains(i) && self.choices.len() < 128 {
                        self.choices.push(*i);
                    }
                }
            }
            StreamApi::Anthropic => match facts.event_type {
                EventType::MessageStart => {
                    self.id.clone_from(&facts.id);
                    self.model.clone_from(&facts.model);
                }
                EventType::ContentBlockStart => self.open_block = facts.index,
                EventType::ContentBlockStop => self.open_block = None,
                _ => {}
            },
            StreamApi::Responses => {
                let r = &facts.responses;
                if r.event == ResponsesEvent::Started && facts.id.is_some() {
                    self.id.clone_from(&facts.id);
                    self.model.clone_from(&facts.model);
                    self.created = facts.created;
                }
                // only the text of `*.delta` events counts
                let counted = matches!(r.event, ResponsesEvent::Delta(_));
                if counted && !self.count(&facts.text) {
                    return false;
                }
                if let Some(state) = self.responses.as_mut() {
                    state.sent(facts);
                }
                return true;
            }
        }
        self.count(&facts.text)
    }

    /// Counts the completion text of an event; false when it would pass the cap (it is then
    /// not counted).
    fn count(&mut self, text: &str) -> bool {
        if text.is_empty() {
            return true;
        }
        // text bytes >= tokens
        let bound = self.tokens + (self.uncounted.len() + text.len()) as u64;
        if bound <= self.cap {
            if self.uncounted.len() + text.len() > UNCOUNTED_MAX {
                self.count_uncounted();
            }
            self.uncounted.push_str(text);
            return true;
        }
        self.count_uncounted();
        let n = self.enc.count(text);
        if self.tokens + n > self.cap {
            return false;
        }
        self.tokens += n;
        true
    }

    /// The stream is ended at an event too large to hold and count.
    pub fn end_oversized(&mut self, out: &mut Vec<u8>) {
        self.oversized = true;
        self.end(out);
    }

    fn count_uncounted(&mut self) {
        self.tokens += self.enc.count(&self.uncounted);
        self.uncounted.clear();
    }

    /// The API's own ending for a stream stopped at its length limit.
    pub fn end(&mut self, out: &mut Vec<u8>) {
        self.ended = true;
        match self.api {
            StreamApi::OpenAiChat => {
                if self.choices.is_empty() {
                    self.choices.push(0);
                }
                let id = Value::from(self.id.as_deref().unwrap_or("")).to_string();
                let model = Value::from(self.model.as_deref().unwrap_or("")).to_string();
                for i in &self.choices {
                    // OpenAI's own field order
                    out.extend_from_slice(
                        format!(
                            "data: {{\"id\":{id},\"object\":\"chat.completion.chunk\",\"created\":{},\"model\":{model},\"choices\":[{{\"index\":{i},\"delta\":{{}},\"logprobs\":null,\"finish_reason\":\"length\"}}]}}\n\n",
                            self.created.unwrap_or(0)
                        )
                        .as_bytes(),
                    );
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
            }
            StreamApi::Anthropic => {
                if let Some(i) = self.open_block.take() {
                    out.extend_from_slice(
                        format!(
                            "event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":{i}}}\n\n"
                        )
                        .as_bytes(),
                    );
                }
                out.extend_from_slice(
                    format!(
                        "event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"max_tokens\",\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":{}}}}}\n\n",
                        self.tokens_sent()
                    )
                    .as_bytes(),
                );
                out.extend_from_slice(
                    b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
                );
            }
            StreamApi::Responses => {
                let sent = self.tokens_sent();
                let head = (
                    self.id.as_deref().unwrap_or(""),
                    self.model.as_deref().unwrap_or(""),
                    self.created.unwrap_or(0),
                );
                if let Some(state) = self.responses.as_mut() {
                    state.end(head, (self.prompt_tokens.unwrap_or(0), sent), out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apis_by_path() {
        assert_eq!(
            StreamApi::of_path(b"/v1/chat/completions"),
            Some(StreamApi::OpenAiChat)
        );
        assert_eq!(
            StreamApi::of_path(b"/v1/messages/"),
            Some(StreamApi::Anthropic)
        );
        assert_eq!(
            StreamApi::of_path(b"/v1/responses"),
            Some(StreamApi::Responses)
        );
        assert_eq!(StreamApi::of_path(b"/v1/responses/input_tokens"), None);
    }
}
