//! Model-name globs: `*` matches any run of characters (also none), `?` exactly one; every
//! other character matches itself, case-sensitively (`gpt-4o*`, `claude-*-4-5`, `*`).

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    /// The pattern's shape, decided once: most globs are a name or a prefix.
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// No wildcard: the name itself.
    Exact,
    /// One `*` at the end and no other wildcard: the text before it is a prefix.
    Prefix,
    /// Anything else, as characters.
    General(Vec<char>),
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        let wild = |c: char| c == '*' || c == '?';
        let kind = match pattern.strip_suffix('*') {
            _ if !pattern.contains(wild) => Kind::Exact,
            Some(head) if !head.contains(wild) => Kind::Prefix,
            _ => Kind::General(pattern.chars().collect()),
        };
        Glob {
            pattern: pattern.to_string(),
            kind,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether the pattern has no wildcard (it names one model).
    pub fn is_literal(&self) -> bool {
        self.kind == Kind::Exact
    }

    /// Whether `text` matches, in O(len(text) * len(pattern)) at worst (no backtracking
    /// blow-up: only the last `*` is ever resumed).
    pub fn matches(&self, text: &str) -> bool {
        let p = match &self.kind {
            Kind::Exact => return text == self.pattern,
            Kind::Prefix => return text.starts_with(&self.pattern[..self.pattern.len() - 1]),
            Kind::General(p) => p,
        };
        let t: Vec<char> = text.chars().collect();
        let (mut pi, mut ti) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == t[ti])) {
                pi += 1;
                ti += 1;
            } else if pi < p.len() && p[pi] == '*' {
                star = Some((pi, ti));
                pi += 1;
            } else if let Some((sp, st)) = star {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|c| *c == '*')
    }
}

/// Whether any glob of `list` matches `text`.
pub fn any_matches(list: &[Glob], text: &str) -> bool {
    list.iter().any(|g| g.matches(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let m = |p: &str, t: &str| Glob::new(p).matches(t);
        assert!(m("*", ""));
        assert!(m("*", "gpt-4o"));
        assert!(m("gpt-4o*", "gpt-4o"));
        assert!(m("gpt-4o*", "gpt-4o-mini"));
        assert!(!m("gpt-4o*", "gpt-4"));
        assert!(m("claude-*-4-5", "claude-haiku-4-5"));
        assert!(!m("claude-*-4-5", "claude-haiku-4-5-20251001"));
        assert!(m("claude-*-4-5*", "claude-haiku-4-5-20251001"));
        assert!(m("gpt-?", "gpt-5"));
        assert!(!m("gpt-?", "gpt-55"));
        assert!(!m("GPT-4o", "gpt-4o"));
        assert!(m("a*b*c", "aXXbYYbc"));
        assert!(!m("a*b*c", "aXXbYYb"));
        assert!(m("模型-*", "模型-大"));
        // the shapes decided at construction agree with the general reading
        assert!(m("gpt-4o", "gpt-4o") && !m("gpt-4o", "gpt-4o-mini"));
        assert!(m("**", "x") && m("gpt-*o*", "gpt-4o") && !m("gpt-*o*", "gpt-4"));
        assert!(m("", "") && !m("", "a"));
        // pathological patterns stay fast
        let long = "a".repeat(10_000);
        assert!(!m("*a*a*a*a*a*b", &long));
    }
}
