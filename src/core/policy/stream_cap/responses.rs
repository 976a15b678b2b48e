//! The ending of an OpenAI Responses stream stopped at the output cap, as OpenAI ends one
//! stopped by `max_output_tokens`: what is open is closed in OpenAI's order (for a message,
//! `response.output_text.done` with the text sent, `response.content_part.done`; for a
//! function call, `response.function_call_arguments.done`; for reasoning, the summary and
//! text parts), each open item gets `response.output_item.done` with `"status":"incomplete"`,
//! and `response.incomplete` ends the stream with `"status":"incomplete"`,
//! `"incomplete_details":{"reason":"max_output_tokens"}`, every output item and the usage of
//! what was sent. Events go on numbering from the last `sequence_number` sent.
//!
//! Everything is rebuilt from the facts the tracker read in the events that went out (ids,
//! indexes, types, and the text of the deltas sent, kept at most [`KEPT_MAX`] bytes).

use serde_json::{json, Value};

use crate::core::usage::{EventFacts, ResponsesEvent, TextKind};

/// Text of the deltas sent kept for the ending (OpenAI's `*.done` events and the final
/// response repeat it), in all; past it the rest is not kept (the ending's texts are cut).
pub const KEPT_MAX: usize = 1 << 20;

/// Output items remembered at most (later ones are left out of the ending).
const ITEMS_MAX: usize = 64;
/// Parts of one item remembered at most.
const PARTS_MAX: usize = 16;

#[derive(Debug, Default)]
struct Part {
    index: u64,
    kind: String,
    text: String,
    open: bool,
    /// Its `*.done` text event went out.
    text_done: bool,
}

impl Part {
    fn json(&self) -> Value {
        match self.kind.as_str() {
            "output_text" => {
                json!({"type": "output_text", "annotations": [], "logprobs": [], "text": self.text})
            }
            "refusal" => json!({"type": "refusal", "refusal": self.text}),
            kind => json!({"type": kind, "text": self.text}),
        }
    }
}

#[derive(Debug, Default)]
struct Item {
    index: u64,
    /// `null` in the ending when the provider sent none.
    id: Option<String>,
    kind: String,
    call_id: Option<String>,
    name: Option<String>,
    open: bool,
    /// Message content or reasoning text parts.
    parts: Vec<Part>,
    /// Reasoning summary parts.
    summary: Vec<Part>,
    /// A function call's arguments.
    arguments: String,
    arguments_done: bool,
    /// Closed by the ending (incomplete).
    cut: bool,
}

impl Item {
    fn json(&self, status: &str) -> Value {
        let parts = |ps: &[Part]| ps.iter().map(Part::json).collect::<Vec<_>>();
        match self.kind.as_str() {
            "message" => json!({"id": self.id, "type": "message", "status": status,
                                "content": parts(&self.parts), "role": "assistant"}),
            "function_call" => json!({"id": self.id, "type": "function_call", "status": status,
                                      "arguments": self.arguments, "call_id": self.call_id,
                                      "name": self.name}),
            "reasoning" => {
                let mut v = json!({"id": self.id, "type": "reasoning", "status": status,
                                   "summary": parts(&self.summary)});
                if !self.parts.is_empty() {
                    v["content"] = Value::from(parts(&self.parts));
                }
                v
            }
            kind => json!({"id": self.id, "type": kind, "status": status}),
        }
    }
}

/// What a Responses stream sent so far that its ending repeats.
#[derive(Debug, Default)]
pub(super) struct ResponsesState {
    /// The next `sequence_number`.
    next_seq: u64,
    items: Vec<Item>,
    /// Text kept, in bytes.
    kept: usize,
}

impl ResponsesState {
    fn item(&mut self, index: Option<u64>) -> Option<&mut Item> {
        let index = index?;
        self.items.iter_mut().rev().find(|i| i.index == index)
    }

    /// An event went out: what it opened, closed or added.
    pub(super) fn sent(&mut self, facts: &EventFacts) {
        let r = &facts.responses;
        if let Some(s) = r.sequence {
            self.next_seq = self.next_seq.max(s.saturating_add(1));
        }
        let budget = KEPT_MAX - self.kept;
        match r.event {
            ResponsesEvent::OutputItemAdded => {
                if self.items.len() < ITEMS_MAX {
                    self.items.push(Item {
                        index: r.output_index.unwrap_or(self.items.len() as u64),
                        id: r.item_id.clone(),
                        kind: r.item_type.clone().unwrap_or_default(),
                        call_id: r.call_id.clone(),
                        name: r.name.clone(),
                        open: true,
                        ..Item::default()
                    });
                }
            }
            ResponsesEvent::OutputItemDone => {
                if let Some(item) = self.item(r.output_index) {
                    item.open = false;
                }
            }
            ResponsesEvent::ContentPartAdded | ResponsesEvent::SummaryPartAdded => {
                let summary = r.event == ResponsesEvent::SummaryPartAdded;
                let index = if summary {
                    r.summary_index
                } else {
                    r.content_index
                };
                let kind = r.part_type.clone().unwrap_or_default();
                if let Some(item) = self.item(r.output_index) {
                    let parts = if summary {
                        &mut item.summary
                    } else {
                        &mut item.parts
                    };
                    if parts.len() < PARTS_MAX {
                        parts.push(Part {
                            index: index.unwrap_or(parts.len() as u64),
                            kind,
                            open: true,
                            ..Part::default()
                        });
                    }
                }
            }
            ResponsesEvent::ContentPartDone | ResponsesEvent::SummaryPartDone => {
                let summary = r.event == ResponsesEvent::SummaryPartDone;
                if let Some(p) = self.part(facts, summary) {
                    p.open = false;
                }
            }
            ResponsesEvent::Delta(kind) => {
                let text = &facts.text;
                let keep = text.len() <= budget;
                let added = match kind {
                    TextKind::Arguments => match self.item(r.output_index) {
                        Some(item) if keep => {
                            item.arguments.push_str(text);
                            true
                        }
                        _ => false,
                    },
                    TextKind::ReasoningSummary
                    | TextKind::OutputText
                    | TextKind::Refusal
                    | TextKind::ReasoningText => {
                        let summary = kind == TextKind::ReasoningSummary;
                        match self.part(facts, summary) {
                            Some(p) if keep => {
                                p.text.push_str(text);
                                true
                            }
                            _ => false,
                        }
                    }
                    TextKind::Other => false,
                };
                if added {
                    self.kept += text.len();
                }
            }
            ResponsesEvent::TextDone(kind) => match kind {
                TextKind::Arguments => {
                    if let Some(item) = self.item(r.output_index) {
                        item.arguments_done = true;
                    }
                }
                TextKind::Other => {}
                _ => {
                    if let Some(p) = self.part(facts, kind == TextKind::ReasoningSummary) {
                        p.text_done = true;
                    }
                }
            },
            ResponsesEvent::Started | ResponsesEvent::Other => {}
        }
    }

    /// The content (or summary) part an event names.
    fn part(&mut self, facts: &EventFacts, summary: bool) -> Option<&mut Part> {
        let r = &facts.responses;
        let (index, output_index) = if summary {
            (r.summary_index?, r.output_index)
        } else {
            (r.content_index?, r.output_index)
        };
        let item = self.item(output_index)?;
        let parts = if summary {
            &mut item.summary
        } else {
            &mut item.parts
        };
        parts.iter_mut().rev().find(|p| p.index == index)
    }

    /// The ending, after the events sent; `head` is the response's id, model and creation
    /// time, `usage` its input and output tokens.
    pub(super) fn end(&mut self, head: (&str, &str, u64), usage: (u64, u64), out: &mut Vec<u8>) {
        let mut seq = self.next_seq;
        let mut event = |out: &mut Vec<u8>, name: &str, mut data: Value| {
            data["type"] = Value::from(name);
            data["sequence_number"] = Value::from(seq);
            seq += 1;
            out.extend_from_slice(b"event: ");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\ndata: ");
            out.extend_from_slice(data.to_string().as_bytes());
            out.extend_from_slice(b"\n\n");
        };
        for item in self.items.iter_mut().filter(|i| i.open) {
            let at = |extra: Value| {
                let mut v = json!({"item_id": item.id, "output_index": item.index});
                if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
                    v.extend(extra);
                }
                v
            };
            if item.kind == "function_call" && !item.arguments_done {
                event(
                    out,
                    "response.function_call_arguments.done",
                    at(json!({"arguments": item.arguments})),
                );
            }
            for p in item.summary.iter().filter(|p| p.open) {
                if !p.text_done {
                    event(
                        out,
                        "response.reasoning_summary_text.done",
                        at(json!({"summary_index": p.index, "text": p.text})),
                    );
                }
                event(
                    out,
                    "response.reasoning_summary_part.done",
                    at(json!({"summary_index": p.index, "part": p.json()})),
                );
            }
            for p in item.parts.iter().filter(|p| p.open) {
                if !p.text_done {
                    let (name, field) = match p.kind.as_str() {
                        "output_text" => ("response.output_text.done", "text"),
                        "refusal" => ("response.refusal.done", "refusal"),
                        "reasoning_text" => ("response.reasoning_text.done", "text"),
                        _ => ("", ""),
                    };
                    if !name.is_empty() {
                        let mut d = at(json!({"content_index": p.index}));
                        d[field] = Value::from(p.text.as_str());
                        if p.kind == "output_text" {
                            d["logprobs"] = json!([]);
                        }
                        event(out, name, d);
                    }
                }
                event(
                    out,
                    "response.content_part.done",
                    at(json!({"content_index": p.index, "part": p.json()})),
                );
            }
            item.summary.iter_mut().for_each(|p| p.open = false);
            item.parts.iter_mut().for_each(|p| p.open = false);
            event(
                out,
                "response.output_item.done",
                json!({"output_index": item.index, "item": item.json("incomplete")}),
            );
            item.open = false;
            item.cut = true;
        }
        let output: Vec<Value> = self
            .items
            .iter()
            .map(|i| i.json(if i.cut { "incomplete" } else { "completed" }))
            .collect();
        let (id, model, created) = head;
        let (input, output_tokens) = usage;
        event(
            out,
            "response.incomplete",
            json!({"response": {
                "id": id, "object": "response", "created_at": created, "status": "incomplete",
                "error": null, "incomplete_details": {"reason": "max_output_tokens"},
                "model": model, "output": output,
                "usage": {"input_tokens": input, "input_tokens_details": {"cached_tokens": 0},
                          "output_tokens": output_tokens,
                          "output_tokens_details": {"reasoning_tokens": 0},
                          "total_tokens": input.saturating_add(output_tokens)},
            }}),
        );
    }
}
