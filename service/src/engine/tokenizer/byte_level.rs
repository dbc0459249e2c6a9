//! GPT-2's byte-to-character table, used by every byte-level BPE vocabulary.
//!
//! Byte-level BPE works on bytes, but its vocabulary files store strings; each byte is
//! spelled as one printable character: the printable Latin-1 bytes as themselves, and
//! the other 68 bytes (controls, space, 0x7F–0xA0, 0xAD) as U+0100 onwards, in byte order.
//! So a space is `Ġ` (U+0120) and a newline `Ċ` (U+010A).

use std::collections::HashMap;
use std::sync::OnceLock;

/// Whether `b` is one of the bytes that stand for themselves.
fn is_printable(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// The character that spells each byte.
pub(crate) fn byte_to_char() -> &'static [char; 256] {
    static TABLE: OnceLock<[char; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = ['\0'; 256];
        let mut next = 256u32;
        for b in 0..=255u8 {
            table[usize::from(b)] = if is_printable(b) {
                char::from(b)
            } else {
                let c = char::from_u32(next).unwrap_or(char::REPLACEMENT_CHARACTER);
                next += 1;
                c
            };
        }
        table
    })
}

/// The byte each spelling character stands for.
pub(crate) fn char_to_byte() -> &'static HashMap<char, u8> {
    static TABLE: OnceLock<HashMap<char, u8>> = OnceLock::new();
    TABLE.get_or_init(|| {
        byte_to_char()
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect()
    })
}

/// The bytes a byte-level token string stands for; `None` when it uses a character
/// outside the table (such tokens, e.g. mislabelled specials, decode as their own UTF-8).
pub(crate) fn decode_token(token: &str) -> Option<Vec<u8>> {
    let table = char_to_byte();
    token.chars().map(|c| table.get(&c).copied()).collect()
}

/// The id of each byte's spelling in `vocab` (`None` for bytes the vocabulary cannot
/// spell); later duplicates win, as in the vocabulary map.
pub(crate) fn byte_ids(vocab: &[String]) -> Box<[Option<u32>; 256]> {
    let mut ids = Box::new([None; 256]);
    let table = char_to_byte();
    for (id, tok) in vocab.iter().enumerate() {
        let mut chars = tok.chars();
        if let (Some(c), None) = (chars.next(), chars.next()) {
            if let Some(&b) = table.get(&c) {
                ids[usize::from(b)] = Some(id as u32);
            }
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_a_bijection_with_gpt2_spellings() {
        let t = byte_to_char();
        assert_eq!(t[usize::from(b' ')], 'Ġ');
        assert_eq!(t[usize::from(b'\n')], 'Ċ');
        assert_eq!(t[usize::from(b'a')], 'a');
        assert_eq!(t[0], 'Ā');
        assert_eq!(char_to_byte().len(), 256);
        assert_eq!(decode_token("ĠhelloĊ").unwrap(), b" hello\n");
        assert_eq!(decode_token("日"), None);
    }
}
