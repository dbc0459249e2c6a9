//! The compact stored form of a receipt body.
//!
//! A body's canonical JSON repeats what the store already knows (`v`, `kind`, the log's
//! origin, the index in the row's key), spells hashes as hex and the time as text, and
//! carries the model description (~210 bytes) that every receipt of a deployment shares.
//! The compact form keeps only the rest — time as microseconds, the commitments as bytes,
//! the model as the 8-byte id of a dictionary row — about a third of the JSON.
//!
//! It is a storage detail, never signed or hashed: reading rebuilds the canonical bytes
//! with the same writer that made them. A body is stored compactly only when that rebuild
//! gives back exactly the bytes that were signed ([`compact_for`]); anything else is stored
//! as its JSON.
//!
//! Layout (integers are LEB128 unless sized; strings and JSON are length-prefixed):
//! `time i64 BE ‖ model id (8) ‖ request_id ‖ tenant ‖ params JSON ‖ prompt commitment (32)
//! ‖ prompt tokens ‖ response commitment (32) ‖ response tokens ‖ finish_reason`.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::commitment::Commitment;
use crate::receipt::{
    BODY_VERSION, ModelInfo, ParamValue, PromptInfo, ReceiptBody, ReceiptKind, ResponseInfo,
    time_from_micros, time_micros,
};

/// Id of a model dictionary row: the first 8 bytes of SHA-256 of the row.
pub(crate) type ModelId = [u8; 8];

/// The dictionary row of `model` and its id.
pub(crate) fn model_row(model: &ModelInfo) -> Option<(ModelId, Vec<u8>)> {
    let row = serde_json::to_vec(model).ok()?;
    let digest = Sha256::digest(&row);
    let id: ModelId = digest[..8].try_into().ok()?;
    Some((id, row))
}

/// The model of a dictionary row.
pub(crate) fn parse_model_row(row: &[u8]) -> Option<ModelInfo> {
    serde_json::from_slice(row).ok()
}

/// The compact form of `body`, whose canonical bytes are `canonical`, with its model stored
/// under `model_id` — or `None` when rebuilding from the compact form would not give back
/// exactly `canonical` (then the JSON is stored instead).
pub(crate) fn compact_for(
    body: &ReceiptBody,
    canonical: &[u8],
    model_id: ModelId,
) -> Option<Vec<u8>> {
    let compact = encode(body, model_id)?;
    let rebuilt = decode(&compact, &body.log, body.index, &body.model)?;
    let bytes = rebuilt.to_canonical_bytes().ok()?;
    (bytes == canonical).then_some(compact)
}

/// Encodes what the store does not already know of `body`.
fn encode(body: &ReceiptBody, model_id: ModelId) -> Option<Vec<u8>> {
    if body.v != BODY_VERSION || body.kind != ReceiptKind::Receipt {
        return None;
    }
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&time_micros(&body.time)?.to_be_bytes());
    out.extend_from_slice(&model_id);
    put_bytes(&mut out, body.request_id.as_bytes());
    put_bytes(&mut out, body.tenant.as_bytes());
    put_bytes(&mut out, &serde_json::to_vec(&body.params).ok()?);
    out.extend_from_slice(&body.prompt.commitment.0);
    put_varint(&mut out, body.prompt.tokens);
    out.extend_from_slice(&body.response.commitment.0);
    put_varint(&mut out, body.response.tokens);
    put_bytes(&mut out, body.response.finish_reason.as_bytes());
    Some(out)
}

/// The model id a compact body refers to.
pub(crate) fn model_id_of(compact: &[u8]) -> Option<ModelId> {
    compact.get(8..16)?.try_into().ok()
}

/// Rebuilds the body of entry `index` of log `origin` from its compact form and its model.
pub(crate) fn decode(
    compact: &[u8],
    origin: &str,
    index: u64,
    model: &ModelInfo,
) -> Option<ReceiptBody> {
    let mut r = Reader(compact);
    let time = time_from_micros(i64::from_be_bytes(r.take(8)?.try_into().ok()?))?;
    r.take(8)?; // the model id, resolved by the caller
    let request_id = r.string()?;
    let tenant = r.string()?;
    let params: BTreeMap<String, ParamValue> = serde_json::from_slice(r.bytes()?).ok()?;
    let prompt = PromptInfo {
        commitment: Commitment(r.take(32)?.try_into().ok()?),
        tokens: r.varint()?,
    };
    let response_commitment = Commitment(r.take(32)?.try_into().ok()?);
    let response_tokens = r.varint()?;
    let finish_reason = r.string()?;
    if !r.0.is_empty() {
        return None;
    }
    Some(ReceiptBody {
        v: BODY_VERSION,
        kind: ReceiptKind::Receipt,
        log: origin.to_string(),
        index,
        time,
        request_id,
        tenant,
        model: model.clone(),
        params,
        prompt,
        response: ResponseInfo {
            commitment: response_commitment,
            tokens: response_tokens,
            finish_reason,
        },
    })
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A cursor over stored bytes; every read is checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.take(1)?.first()?;
            n |= u64::from(byte & 0x7f).checked_shl(shift)?;
            if byte & 0x80 == 0 {
                return Some(n);
            }
        }
        None
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        self.take(len)
    }

    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The receipt module's sample body with the given varying parts.
    fn body(
        index: u64,
        micros: i64,
        request_id: String,
        tokens: (u64, u64),
        params: BTreeMap<String, ParamValue>,
    ) -> ReceiptBody {
        let mut body = crate::receipt::tests::sample();
        body.index = index;
        body.time = time_from_micros(micros).expect("in range");
        body.request_id = request_id;
        body.prompt.tokens = tokens.0;
        body.response.tokens = tokens.1;
        body.params = params;
        body
    }

    fn param() -> impl Strategy<Value = ParamValue> {
        prop_oneof![
            (-(1i64 << 53) + 1..(1i64 << 53)).prop_map(ParamValue::Int),
            any::<bool>().prop_map(ParamValue::Bool),
            "[0-9.]{1,8}".prop_map(ParamValue::Str),
        ]
    }

    proptest! {
        #[test]
        fn compact_bodies_rebuild_the_signed_bytes(
            index in 0u64..1 << 40,
            micros in 0i64..253_402_300_799_000_000,
            request_id in "[A-Za-z0-9._:-]{1,64}",
            tokens in (0u64..1 << 40, 0u64..1 << 40),
            params in proptest::collection::btree_map("[a-z_]{1,12}", param(), 0..8),
        ) {
            let body = body(index, micros, request_id, tokens, params);
            let canonical = body.to_canonical_bytes().expect("valid");
            let (id, row) = model_row(&body.model).expect("model row");
            prop_assert_eq!(parse_model_row(&row), Some(body.model.clone()));
            let compact = compact_for(&body, &canonical, id).expect("compact");
            prop_assert_eq!(model_id_of(&compact), Some(id));
            prop_assert!(compact.len() * 2 < canonical.len(), "{} vs {}", compact.len(), canonical.len());
            let rebuilt = decode(&compact, &body.log, index, &body.model).expect("decodes");
            prop_assert_eq!(rebuilt.to_canonical_bytes().expect("valid"), canonical);
        }

        #[test]
        fn truncated_or_extended_compact_bodies_are_refused(cut in 0usize..200, extra in any::<u8>()) {
            let body = body(1, 1_700_000_000_000_000, "req-1".into(), (5, 6), BTreeMap::new());
            let canonical = body.to_canonical_bytes().expect("valid");
            let compact = compact_for(&body, &canonical, [9; 8]).expect("compact");
            let cut = cut % compact.len();
            prop_assert!(decode(&compact[..cut], &body.log, 1, &body.model).is_none());
            let mut longer = compact;
            longer.push(extra);
            prop_assert!(decode(&longer, &body.log, 1, &body.model).is_none());
        }
    }

    #[test]
    fn bodies_that_would_not_rebuild_exactly_are_not_compacted() {
        let body = body(
            2,
            1_700_000_000_000_000,
            "req-2".into(),
            (1, 1),
            BTreeMap::new(),
        );
        let canonical = body.to_canonical_bytes().expect("valid");
        let mut other = canonical.clone();
        other.push(b' ');
        assert!(compact_for(&body, &other, [1; 8]).is_none());
        let mut erasure_like = body;
        erasure_like.v = 2;
        assert!(compact_for(&erasure_like, &canonical, [1; 8]).is_none());
    }
}
