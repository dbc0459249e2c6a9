//! The strict JSON reader (`sworn_ledger::ijson::parse`) every auditor-facing input goes
//! through, and the RFC 8785 canonical form (`jcs`) that receipts are signed over.
//!
//! Invariants: I-JSON is a subset of JSON, so serde_json reads an accepted document as
//! the same value; an accepted document survives serialise-and-reparse; canonical bytes
//! are accepted by `parse_canonical`, and bytes it accepts are their own canonical form.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sworn_ledger::{ijson, jcs};

#[path = "../common/json.rs"]
mod json;
use json::has_float;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = ijson::parse(data) {
        let lax: Value = serde_json::from_slice(data).expect("I-JSON is JSON");
        assert_eq!(lax, value);
        if !has_float(&value) {
            let text = serde_json::to_vec(&value).expect("a Value serialises");
            assert_eq!(ijson::parse(&text).expect("re-serialised I-JSON"), value);
        }
        if let Ok(canonical) = jcs::canonicalize(&value) {
            if canonical.len() <= jcs::MAX_CANONICAL_BYTES {
                let again =
                    jcs::parse_canonical(&canonical).expect("canonical bytes are canonical");
                assert_eq!(
                    jcs::canonicalize(&again).expect("canonical value"),
                    canonical
                );
            }
        }
    }
    if let Ok(value) = jcs::parse_canonical(data) {
        assert_eq!(jcs::canonicalize(&value).expect("accepted value"), data);
        assert!(ijson::parse(data).is_ok(), "canonical JSON is I-JSON");
    }
});
