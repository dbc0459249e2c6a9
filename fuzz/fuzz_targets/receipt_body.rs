//! Signed log entries: canonical receipt and erasure bodies (`EntryBody::parse_canonical`,
//! `ReceiptBody::parse_canonical`) and the receipt JSON bundle (`Receipt::verify_json`,
//! pinned to the verifier vectors' key), on arbitrary bytes.
//!
//! Invariants: a body has one spelling (accepted bytes are their own canonical form, and
//! the index splice the log writer uses rebuilds them); the bulk verifier
//! (`verify_json_each`) reaches the same verdict as the one-at-a-time verifier.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sworn_ledger::entry::{EntryBody, Receipt};
use sworn_ledger::keys::PinnedKey;
use sworn_ledger::receipt::ReceiptBody;

const VECTORS_KEY: &str = include_str!("../../verifier/tests/vectors/key.vkey");

fn pinned() -> &'static PinnedKey {
    static KEY: OnceLock<PinnedKey> = OnceLock::new();
    KEY.get_or_init(|| PinnedKey::from_vkey(VECTORS_KEY.trim()).expect("vectors key"))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = EntryBody::parse_canonical(data) {
        assert_eq!(body.to_canonical_bytes().expect("accepted body"), data);
    }
    if let Ok(body) = ReceiptBody::parse_canonical(data) {
        assert_eq!(body.to_canonical_bytes().expect("accepted body"), data);
        let tail = body.canonical_tail().expect("accepted body");
        assert_eq!(ReceiptBody::splice_index(body.index, &tail), data);
        assert!(matches!(
            EntryBody::parse_canonical(data),
            Ok(EntryBody::Receipt(ref b)) if *b == body
        ));
    }
    let one = Receipt::verify_json(data, pinned());
    let bulk = Receipt::verify_json_each([data], pinned());
    let [bulk] = bulk.as_slice() else {
        panic!("one verdict per bundle, got {}", bulk.len());
    };
    match (&one, bulk) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        (a, b) => panic!("verdicts differ: one at a time {a:?}, in bulk {b:?}"),
    }
    if let Ok(receipt) = one {
        assert_eq!(receipt.entry.body, receipt.to_json().body.as_bytes());
    }
});
