//! Added tokens (`<|im_start|>`, `<s>`, `<think>`…): matched whole in the raw text before
//! any pre-tokenisation, so that they are never cut into pieces.
//!
//! Matching is leftmost-longest, as in `tokenizers`' added-vocabulary matcher: at each
//! position the longest added token that starts there wins.

use std::collections::HashMap;

/// A piece of input text: plain text for the model, or one added token.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Segment<'a> {
    Text(&'a str),
    Added(u32),
}

/// The added tokens of a vocabulary, indexed by their first byte.
#[derive(Debug, Default)]
pub(crate) struct AddedTokens {
    /// First byte -> `(content, id)`, longest content first.
    by_first_byte: HashMap<u8, Vec<(String, u32)>>,
}

impl AddedTokens {
    pub(crate) fn insert(&mut self, content: &str, id: u32) {
        let Some(&first) = content.as_bytes().first() else {
            return;
        };
        let list = self.by_first_byte.entry(first).or_default();
        if list.iter().any(|(c, _)| c == content) {
            return;
        }
        list.push((content.to_string(), id));
        list.sort_by_key(|(content, _)| std::cmp::Reverse(content.len()));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_first_byte.is_empty()
    }

    /// Splits `text` into plain text and added tokens, in order.
    pub(crate) fn split<'a>(&self, text: &'a str) -> Vec<Segment<'a>> {
        let mut out = Vec::new();
        if self.is_empty() {
            if !text.is_empty() {
                out.push(Segment::Text(text));
            }
            return out;
        }
        let bytes = text.as_bytes();
        let (mut plain_start, mut i) = (0, 0);
        while i < bytes.len() {
            let found = self.by_first_byte.get(&bytes[i]).and_then(|cands| {
                cands
                    .iter()
                    .find(|(c, _)| bytes[i..].starts_with(c.as_bytes()))
            });
            match found {
                // Added tokens are valid UTF-8 and start with a non-continuation byte, so a
                // match always begins and ends on character boundaries.
                Some((content, id)) => {
                    if plain_start < i {
                        out.push(Segment::Text(&text[plain_start..i]));
                    }
                    out.push(Segment::Added(*id));
                    i += content.len();
                    plain_start = i;
                }
                None => i += 1,
            }
        }
        if plain_start < text.len() {
            out.push(Segment::Text(&text[plain_start..]));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_added_token_wins() {
        let mut a = AddedTokens::default();
        a.insert("<|im", 7);
        a.insert("<|im_start|>", 1);
        let s = a.split("x<|im_start|>y<|imz");
        assert_eq!(
            s,
            [
                Segment::Text("x"),
                Segment::Added(1),
                Segment::Text("y"),
                Segment::Added(7),
                Segment::Text("z")
            ]
        );
        assert_eq!(
            a.split("é<|im_start|>"),
            [Segment::Text("é"), Segment::Added(1)]
        );
    }
}
