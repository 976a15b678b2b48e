//! Byte-level helpers for reading JSON text fast, shared by the response scanners and the
//! prompt's bound.

/// Where the next quote or backslash is in `data[from..]` (or `data.len()`): eight bytes at a
/// time for the short strings most values are, `memchr2` past 32 bytes.
#[inline]
pub fn string_stop(data: &[u8], from: usize) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    const QUOTES: u64 = u64::from_ne_bytes([b'"'; 8]);
    const BACKSLASHES: u64 = u64::from_ne_bytes([b'\\'; 8]);
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut at = from;
    let short_end = data.len().min(from + 32);
    while at + 8 <= short_end {
        let mut word = [0u8; 8];
        word.copy_from_slice(&data[at..at + 8]);
        let x = u64::from_le_bytes(word);
        let hit = zero(x ^ QUOTES) | zero(x ^ BACKSLASHES);
        if hit != 0 {
            return at + (hit.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while at < short_end {
        if data[at] == b'"' || data[at] == b'\\' {
            return at;
        }
        at += 1;
    }
    if short_end == data.len() {
        return short_end;
    }
    memchr::memchr2(b'"', b'\\', &data[short_end..]).map_or(data.len(), |p| short_end + p)
}

/// Bytes as text, invalid UTF-8 replaced: validated first (fast for the valid text nearly
/// all of it is), replaced only when that fails.
#[inline]
pub fn lossy(raw: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(raw) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(raw),
    }
}
