//! The request body's prompt for the policy engine: a bound without the tokenizer, or the
//! exact count (kept, so the log phase does not count again). Both read the prompt's fields
//! where the request's parse found them in the body (no second parse of the body).

use crate::core::policy::PromptTokens;
use crate::core::request::BodySpans;
use crate::core::tokens::{bound_fields, count_fields, PromptCount, PromptFields};

pub struct BodyPrompt<'a> {
    /// The prompt's fields (`None`: the body is not JSON, no prompt).
    fields: Option<PromptFields<'a>>,
    model: Option<&'a str>,
    counted: Option<Option<PromptCount>>,
}

impl<'a> BodyPrompt<'a> {
    /// `text` is the request's JSON body (`None`: not JSON, no prompt) and `spans` where its
    /// parse found the prompt's fields.
    pub fn new(text: Option<&'a str>, spans: &BodySpans, model: Option<&'a str>) -> Self {
        let fields = text.map(|t| spans.prompt_fields(t));
        BodyPrompt {
            fields,
            model,
            counted: None,
        }
    }

    /// The exact count, made once.
    pub fn exact_count(&mut self) -> u64 {
        self.exact()
    }

    /// The exact count, if it was made.
    pub fn counted(&self) -> Option<Option<PromptCount>> {
        self.counted
    }
}

impl PromptTokens for BodyPrompt<'_> {
    fn bound(&mut self) -> u64 {
        if let Some(Some(c)) = self.counted {
            return c.tokens;
        }
        self.fields
            .as_ref()
            .and_then(|f| bound_fields(f, self.model))
            .unwrap_or(0)
    }

    fn exact(&mut self) -> u64 {
        let fields = self.fields;
        let model = self.model;
        let counted = *self
            .counted
            .get_or_insert_with(|| fields.as_ref().and_then(|f| count_fields(f, model)));
        counted.map_or(0, |c| c.tokens)
    }
}
