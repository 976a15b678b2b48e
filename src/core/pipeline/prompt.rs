//! The request body's prompt for the policy engine: a bound without the tokenizer, or the
//! exact count (kept, so the log phase does not count again).

use crate::core::policy::PromptTokens;
use crate::core::tokens::{count_prompt, prompt_bound, PromptCount};

pub struct BodyPrompt<'a> {
    body: Option<&'a [u8]>,
    model: Option<&'a str>,
    counted: Option<Option<PromptCount>>,
}

impl<'a> BodyPrompt<'a> {
    /// `body` is the request's JSON body (`None`: not JSON, no prompt).
    pub fn new(body: Option<&'a [u8]>, model: Option<&'a str>) -> Self {
        BodyPrompt {
            body,
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
        self.body
            .and_then(|b| prompt_bound(b, self.model))
            .unwrap_or(0)
    }

    fn exact(&mut self) -> u64 {
        let body = self.body;
        let model = self.model;
        let counted = *self
            .counted
            .get_or_insert_with(|| body.and_then(|b| count_prompt(b, model)));
        counted.map_or(0, |c| c.tokens)
    }
}
