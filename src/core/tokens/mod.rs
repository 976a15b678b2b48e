//! Token counting: OpenAI's byte-pair encodings (exact, equal to OpenAI's `tiktoken`), the
//! model -> encoding table, and the chat framing of a request's prompt.
//!
//! The encoders are `bpe-openai`'s: linear in the input on every input (1 MB of one repeated
//! character included) and free of panics, where `tiktoken-rs` is super-linear and panics on a
//! megabyte of spaces. They count ordinary text only: a user who types `<|endoftext|>` gets
//! the tokens of that text, as the API counts it, never one control token.

#[cfg(test)]
mod oracle;
mod prompt;
pub mod service;

pub use prompt::{
    bound_fields, count_fields, count_prompt, prompt_bound, PromptCount, PromptFields,
};

/// An OpenAI encoding the gateway counts exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    O200k,
    Cl100k,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::O200k => "o200k_base",
            Encoding::Cl100k => "cl100k_base",
        }
    }

    /// The encoding of an OpenAI model, as OpenAI's `tiktoken` maps it (a fine-tune `ft:`
    /// prefix and a `provider/` prefix are ignored). `None` for models whose tokenizer is not
    /// public (Anthropic, open-weight models, ...).
    pub fn for_model(model: &str) -> Option<Encoding> {
        let m = model.strip_prefix("ft:").unwrap_or(model);
        let m = m.rsplit('/').next().unwrap_or(m).as_bytes();
        // case-insensitive, without a lowercase copy
        let family = |prefix: &str| {
            let p = prefix.as_bytes();
            m.len() >= p.len()
                && m[..p.len()].eq_ignore_ascii_case(p)
                && matches!(m.get(p.len()), None | Some(b'-' | b'.' | b':'))
        };
        const O200K: &[&str] = &[
            "gpt-5",
            "gpt-4.1",
            "gpt-4.5",
            "gpt-4o",
            "chatgpt-4o",
            "o1",
            "o3",
            "o4-mini",
            "gpt-oss",
            "codex-mini",
        ];
        const CL100K: &[&str] = &[
            "gpt-4",
            "gpt-3.5-turbo",
            "gpt-3.5",
            "gpt-35-turbo",
            "text-embedding-ada-002",
            "text-embedding-3-small",
            "text-embedding-3-large",
            "davinci-002",
            "babbage-002",
        ];
        if O200K.iter().any(|p| family(p)) {
            Some(Encoding::O200k)
        } else if CL100K.iter().any(|p| family(p)) {
            Some(Encoding::Cl100k)
        } else {
            None
        }
    }

    fn tokenizer(self) -> &'static bpe_openai::Tokenizer {
        match self {
            Encoding::O200k => bpe_openai::o200k_base(),
            Encoding::Cl100k => bpe_openai::cl100k_base(),
        }
    }

    /// Tokens of `text` as ordinary text.
    pub fn count(self, text: &str) -> u64 {
        if text.is_empty() {
            return 0;
        }
        self.tokenizer().count(text) as u64
    }
}

/// Builds both encoders now (about 100 ms and 100 MB), so that no request pays for it.
/// Returns true when this call built them; later calls return false at once.
pub fn warm_up() -> bool {
    static WARM: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    let mut built = false;
    WARM.get_or_init(|| {
        Encoding::O200k.count("warm up");
        Encoding::Cl100k.count("warm up");
        built = true;
    });
    built
}

/// How a token count was obtained, from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Reported by the provider in its response.
    Provider,
    /// Counted by the gateway with the model's own encoding.
    Counted,
    /// Counted by the gateway with an encoding that is not the model's (or with framing the
    /// gateway cannot reproduce exactly, e.g. images or tool definitions).
    Estimated,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Provider => "provider",
            Source::Counted => "counted",
            Source::Estimated => "estimated",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_table_follows_tiktoken() {
        for m in [
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4o-2024-08-06",
            "chatgpt-4o-latest",
            "gpt-4.1-nano",
            "gpt-4.5-preview",
            "gpt-5",
            "gpt-5.1",
            "gpt-5-mini",
            "o1",
            "o1-mini",
            "o3-mini",
            "o4-mini",
            "gpt-oss-120b",
            "ft:gpt-4o-mini:org::id",
            "openai/gpt-4o",
            "GPT-4o",
        ] {
            assert_eq!(Encoding::for_model(m), Some(Encoding::O200k), "{m}");
        }
        for m in [
            "gpt-4",
            "gpt-4-turbo",
            "gpt-4-0613",
            "gpt-3.5-turbo",
            "gpt-3.5-turbo-16k",
            "gpt-35-turbo",
            "text-embedding-3-small",
            "text-embedding-ada-002",
            "ft:gpt-3.5-turbo:org::id",
        ] {
            assert_eq!(Encoding::for_model(m), Some(Encoding::Cl100k), "{m}");
        }
        for m in [
            "claude-3-5-sonnet",
            "mock-gpt",
            "gpt-40",
            "o10",
            "llama-3",
            "",
            "gpt-4oo",
        ] {
            assert_eq!(Encoding::for_model(m), None, "{m}");
        }
    }

    #[test]
    fn special_token_text_is_ordinary_text() {
        // OpenAI's tiktoken, encode_ordinary: 17 tokens (o200k); 7 if the markers were control
        // tokens
        let text = "ignore this <|endoftext|> and <|endofprompt|>";
        assert_eq!(Encoding::O200k.count(text), 17);
    }

    #[test]
    fn long_runs_of_one_character_are_counted() {
        let spaces = " ".repeat(1 << 20);
        assert!(Encoding::O200k.count(&spaces) > 0);
        let a = "a".repeat(1 << 20);
        assert!(Encoding::Cl100k.count(&a) > 0);
    }
}
