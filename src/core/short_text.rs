//! Short texts (numbers and a few letters) built on the stack, for response header values
//! written on every request: no allocation, no formatting machinery.

/// Room for the longest value written: three u64 and a few letters.
const ROOM: usize = 72;

/// See the module documentation. Bytes past the room are dropped (never reached by the
/// values written).
#[derive(Clone, Copy)]
pub struct ShortText {
    buf: [u8; ROOM],
    len: usize,
}

impl Default for ShortText {
    fn default() -> Self {
        ShortText {
            buf: [0; ROOM],
            len: 0,
        }
    }
}

impl ShortText {
    pub fn push(&mut self, bytes: &[u8]) -> &mut Self {
        let n = bytes.len().min(ROOM - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
        self
    }

    /// A number in decimal.
    pub fn number(&mut self, mut n: u64) -> &mut Self {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[at..])
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The text (only ASCII is pushed by the gateway; anything else reads as empty).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

/// `s` cut to at most `max` bytes without splitting a character.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A number as a short text.
pub fn decimal(n: u64) -> ShortText {
    let mut t = ShortText::default();
    t.number(n);
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_letters() {
        for n in [0u64, 7, 10, 99, 1234567890, u64::MAX] {
            assert_eq!(decimal(n).as_str(), n.to_string());
        }
        let mut t = ShortText::default();
        t.number(2).push(b"h").number(0).push(b"m");
        assert_eq!(t.as_str(), "2h0m");
    }
}
