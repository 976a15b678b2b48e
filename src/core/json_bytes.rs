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

/// The closing quote of the usual short string whose contents start at `from`: when a quote
/// comes among the next sixteen bytes with no backslash before it, its index (two words
/// tested, no loop); `None` sends the caller to [`string_stop`].
#[inline(always)]
pub fn short_string_end(data: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    const QUOTES: u64 = u64::from_ne_bytes([b'"'; 8]);
    const BACKSLASHES: u64 = u64::from_ne_bytes([b'\\'; 8]);
    let stop = |bytes: &[u8]| {
        let mut word = [0u8; 8];
        word.copy_from_slice(bytes);
        let x = u64::from_le_bytes(word);
        let (q, b) = (x ^ QUOTES, x ^ BACKSLASHES);
        // the lowest flag of each test is exact (borrows only run upwards)
        let hit = ((q.wrapping_sub(ONES) & !q) | (b.wrapping_sub(ONES) & !b)) & HIGH;
        (hit != 0).then(|| (hit.trailing_zeros() / 8) as usize)
    };
    let words = data.get(from..from + 16)?;
    let k = stop(&words[..8]).or_else(|| stop(&words[8..]).map(|k| k + 8))?;
    (words[k] == b'"').then_some(from + k)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_strings_end_where_the_general_search_says() {
        let text = br#""a","bb\"c","0123456789abcde","0123456789abcdef","x\\y","#;
        for from in 0..text.len() {
            let general = string_stop(text, from);
            let want = (text.get(general) == Some(&b'"') && general < from + 16).then_some(general);
            assert_eq!(
                short_string_end(text, from),
                want.filter(|_| from + 16 <= text.len()),
                "{from}"
            );
        }
    }
}
