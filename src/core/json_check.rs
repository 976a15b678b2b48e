//! Validating JSON without building it: one pass that checks a value's syntax as strictly as
//! `serde_json` does (RFC 8259: no trailing commas, no control characters in strings, no
//! leading zeros, only the escapes JSON has) and says where it ends. Nesting is tracked one
//! bit per level, so depth costs no recursion and no allocation below 64 levels.
//!
//! UTF-8 is the caller's (serde does not check the strings it skips either).

/// Where a check stopped on input that is not JSON: the offending byte, or the input's
/// length when the input ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop {
    pub at: usize,
    pub eof: bool,
}

impl Stop {
    /// Line and column of the stop (1-based, as serde reports them: the column of the
    /// offending byte, or of the last byte when the input ended).
    pub fn line_column(&self, text: &[u8]) -> (usize, usize) {
        let at = if self.eof {
            self.at.saturating_sub(1)
        } else {
            self.at
        };
        let before = &text[..at.min(text.len())];
        let line = 1 + before.iter().filter(|&&c| c == b'\n').count();
        let start = before
            .iter()
            .rposition(|&c| c == b'\n')
            .map_or(0, |p| p + 1);
        (line, at - start + 1)
    }
}

/// A check over one text.
pub struct Check<'a> {
    text: &'a [u8],
}

/// The first stop byte of eight: each test flags bytes equal to (or below) its value; the
/// lowest flag of each is exact, since borrows only run upwards.
#[inline(always)]
fn word_stop(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    const QUOTES: u64 = u64::from_ne_bytes([b'"'; 8]);
    const BACKSLASHES: u64 = u64::from_ne_bytes([b'\\'; 8]);
    const SPACES: u64 = u64::from_ne_bytes([0x20; 8]);
    let mut word = [0u8; 8];
    word.copy_from_slice(bytes);
    let x = u64::from_le_bytes(word);
    let (q, b) = (x ^ QUOTES, x ^ BACKSLASHES);
    let hit =
        (q.wrapping_sub(ONES) & !q) | (b.wrapping_sub(ONES) & !b) | (x.wrapping_sub(SPACES) & !x);
    let hit = hit & HIGH;
    (hit != 0).then(|| (hit.trailing_zeros() / 8) as usize)
}

/// Which container a nesting level is.
const OBJECT: u64 = 1;
const ARRAY: u64 = 0;

/// The open containers, one bit per level (the innermost in bit 0 of `inner`).
struct Nest {
    inner: u64,
    depth: usize,
    outer: Vec<u64>,
}

impl Nest {
    fn push(&mut self, kind: u64) {
        if self.depth > 0 && self.depth % 64 == 0 {
            self.outer.push(self.inner);
            self.inner = 0;
        }
        self.inner = (self.inner << 1) | kind;
        self.depth += 1;
    }

    fn pop(&mut self) {
        self.depth -= 1;
        self.inner >>= 1;
        if self.depth > 0 && self.depth % 64 == 0 {
            self.inner = self.outer.pop().unwrap_or(0);
        }
    }

    fn top(&self) -> u64 {
        self.inner & 1
    }
}

impl<'a> Check<'a> {
    pub fn new(text: &'a [u8]) -> Self {
        Check { text }
    }

    fn stop(&self, at: usize) -> Stop {
        Stop {
            at: at.min(self.text.len()),
            eof: at >= self.text.len(),
        }
    }

    /// The first byte at or after `at` that is not JSON whitespace.
    #[inline]
    pub fn ws(&self, mut at: usize) -> usize {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.text.get(at) {
            at += 1;
        }
        at
    }

    /// Whether the byte at `at` is `byte`.
    #[inline]
    pub fn is(&self, at: usize, byte: u8) -> bool {
        self.text.get(at) == Some(&byte)
    }

    /// Expects `byte` at `at` (after whitespace); the position after it.
    #[inline]
    pub fn expect(&self, at: usize, byte: u8) -> Result<usize, Stop> {
        let at = self.ws(at);
        if self.is(at, byte) {
            Ok(at + 1)
        } else {
            Err(self.stop(at))
        }
    }

    /// The string whose opening quote is at `at`: the position after its closing quote, and
    /// whether it has escapes.
    #[inline]
    pub fn string(&mut self, at: usize) -> Result<(usize, bool), Stop> {
        // the usual short string: its closing quote among the sixteen bytes after the
        // opening one, found without the general loop
        if let Some(word) = self.text.get(at..at + 17) {
            if word[0] == b'"' {
                let stop =
                    word_stop(&word[1..9]).or_else(|| word_stop(&word[9..17]).map(|k| k + 8));
                if let Some(k) = stop {
                    if word[1 + k] == b'"' {
                        return Ok((at + 2 + k, false));
                    }
                }
            }
        }
        self.string_general(at)
    }

    #[inline(never)]
    fn string_general(&mut self, at: usize) -> Result<(usize, bool), Stop> {
        if !self.is(at, b'"') {
            return Err(self.stop(at));
        }
        let text = self.text;
        let mut i = at + 1;
        let mut escaped = false;
        loop {
            i = self.string_stop(i);
            match text.get(i) {
                None => return Err(self.stop(i)),
                Some(b'"') => return Ok((i + 1, escaped)),
                Some(b'\\') => {
                    escaped = true;
                    i = self.escape(i + 1)?;
                }
                Some(_) => return Err(self.stop(i)),
            }
        }
    }

    /// The escape whose letter is at `at`: the position after it.
    fn escape(&self, at: usize) -> Result<usize, Stop> {
        match self.text.get(at) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(at + 1),
            Some(b'u') => {
                for i in at + 1..at + 5 {
                    if !self.text.get(i).is_some_and(u8::is_ascii_hexdigit) {
                        return Err(self.stop(i));
                    }
                }
                Ok(at + 5)
            }
            _ => Err(self.stop(at)),
        }
    }

    /// The next quote, backslash or control byte at or after `from` (or the text's end):
    /// the first sixteen bytes eight at a time (where most strings end), then by memchr.
    #[inline]
    fn string_stop(&self, from: usize) -> usize {
        let text = self.text;
        let mut at = from;
        let short = text.len().min(from + 16);
        while at + 8 <= short {
            if let Some(k) = word_stop(&text[at..at + 8]) {
                return at + k;
            }
            at += 8;
        }
        // past that: the next quote or backslash by memchr, then no control byte before it
        // (the smallest byte of the run, a reduction the compiler vectorises)
        let end = memchr::memchr2(b'"', b'\\', &text[at..]).map_or(text.len(), |k| at + k);
        let run = &text[at..end];
        if run.iter().fold(0xff, |low: u8, &c| low.min(c)) < 0x20 {
            return at + run.iter().position(|&c| c < 0x20).unwrap_or(0);
        }
        end
    }

    /// A number starting at `at`: the position after it.
    fn number(&self, at: usize) -> Result<usize, Stop> {
        let text = self.text;
        let digit = |i: usize| text.get(i).is_some_and(u8::is_ascii_digit);
        let digits = |mut i: usize| {
            while digit(i) {
                i += 1;
            }
            i
        };
        let mut i = at;
        if self.is(i, b'-') {
            i += 1;
        }
        match text.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = digits(i + 1),
            _ => return Err(self.stop(i)),
        }
        if self.is(i, b'.') {
            if !digit(i + 1) {
                return Err(self.stop(i + 1));
            }
            i = digits(i + 1);
        }
        if let Some(b'e' | b'E') = text.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = text.get(i) {
                i += 1;
            }
            if !digit(i) {
                return Err(self.stop(i));
            }
            i = digits(i);
        }
        Ok(i)
    }

    fn literal(&self, at: usize, word: &[u8]) -> Result<usize, Stop> {
        for (k, &c) in word.iter().enumerate() {
            if self.text.get(at + k) != Some(&c) {
                return Err(self.stop(at + k));
            }
        }
        Ok(at + word.len())
    }

    /// One scalar or an empty container at `at`; `None` when a container opens there (its
    /// kind pushed on `nest`, `at` moved past the opening bracket).
    fn scalar(&mut self, at: &mut usize, nest: &mut Nest) -> Result<Option<()>, Stop> {
        let i = *at;
        *at = match self.text.get(i) {
            Some(b'"') => self.string(i)?.0,
            Some(b'-' | b'0'..=b'9') => self.number(i)?,
            Some(b't') => self.literal(i, b"true")?,
            Some(b'f') => self.literal(i, b"false")?,
            Some(b'n') => self.literal(i, b"null")?,
            Some(&open @ (b'{' | b'[')) => {
                let next = self.ws(i + 1);
                let close = if open == b'{' { b'}' } else { b']' };
                if self.is(next, close) {
                    next + 1
                } else {
                    if open == b'{' {
                        nest.push(OBJECT);
                        *at = self.member_start(next)?;
                    } else {
                        nest.push(ARRAY);
                        *at = next;
                    }
                    return Ok(None);
                }
            }
            _ => return Err(self.stop(i)),
        };
        Ok(Some(()))
    }

    /// A member's key and colon at `at` (after whitespace): where its value starts.
    fn member_start(&mut self, at: usize) -> Result<usize, Stop> {
        let (after, _) = self.string(self.ws(at))?;
        let colon = self.expect(after, b':')?;
        Ok(self.ws(colon))
    }

    /// The value at `at` (whitespace before it is skipped): the position after it.
    pub fn value(&mut self, at: usize) -> Result<usize, Stop> {
        let mut nest = Nest {
            inner: 0,
            depth: 0,
            outer: Vec::new(),
        };
        let mut i = self.ws(at);
        loop {
            if self.scalar(&mut i, &mut nest)?.is_none() {
                continue;
            }
            // a value ended at `i`: close what it ends, or go to the next element
            loop {
                if nest.depth == 0 {
                    return Ok(i);
                }
                i = self.ws(i);
                match (self.text.get(i), nest.top()) {
                    (Some(b','), OBJECT) => {
                        i = self.member_start(i + 1)?;
                        break;
                    }
                    (Some(b','), _) => {
                        i = self.ws(i + 1);
                        break;
                    }
                    (Some(b'}'), OBJECT) | (Some(b']'), ARRAY) => {
                        nest.pop();
                        i += 1;
                    }
                    _ => return Err(self.stop(i)),
                }
            }
        }
    }

    /// Checks that `text` is exactly one JSON value (whitespace around it allowed).
    pub fn document(&mut self) -> Result<(), Stop> {
        let end = self.value(0)?;
        let end = self.ws(end);
        if end < self.text.len() {
            return Err(self.stop(end));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
