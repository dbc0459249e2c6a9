//! The auditor's receipt check (`sworn_verifier::receipt_check::verify_bundle`) on
//! arbitrary bundle bytes, without a chain, pinned to the verifier vectors' key and with
//! the vectors' honest prompt disclosed: bundle shape, signature, inclusion proof,
//! checkpoint note, erasure event and commitment layers all parse their sections.
//!
//! Invariants: a bundle that splits into sections splits the same way after being
//! written back (`Bundle::to_value`; for bundles without floats, which serde_json may
//! read back one ulp off, and which no Sworn section has); the report renders (human and JSON); a bundle whose
//! signature layer passed holds a receipt that ledger's `Receipt::verify_json` accepts.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sworn_ledger::entry::Receipt;
use sworn_ledger::keys::PinnedKey;
use sworn_verifier::bundle::Bundle;
use sworn_verifier::cli::KeyArgs;
use sworn_verifier::receipt_check::{BundleInputs, verify_bundle};
use sworn_verifier::render;
use sworn_verifier::report::{Layer, Outcome};
use tokio::runtime::Runtime;

const VECTORS_KEY: &str = include_str!("../../verifier/tests/vectors/key.vkey");
const HONEST_PROMPT: &[u8] = include_bytes!("../../verifier/tests/vectors/honest.prompt");

struct Fixed {
    key_args: KeyArgs,
    pinned: PinnedKey,
    runtime: Runtime,
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| Fixed {
        key_args: KeyArgs {
            key: Some(VECTORS_KEY.trim().to_string()),
            from_chain: false,
            origin: None,
        },
        pinned: PinnedKey::from_vkey(VECTORS_KEY.trim()).expect("vectors key"),
        runtime: tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime"),
    })
}

#[path = "../common/json.rs"]
mod json;
use json::has_float;

fuzz_target!(|data: &[u8]| {
    let f = fixed();
    if let Some(bundle) = Bundle::parse(data)
        .ok()
        .filter(|b| !has_float(&b.to_value()))
    {
        let written = serde_json::to_vec(&bundle.to_value()).expect("a Value serialises");
        let again = Bundle::parse(&written).expect("a written-back bundle parses");
        assert_eq!(again.receipt, bundle.receipt);
        assert_eq!(again.inclusion, bundle.inclusion);
        assert_eq!(again.checkpoint, bundle.checkpoint);
        assert_eq!(again.anchor, bundle.anchor);
        assert_eq!(again.erasure, bundle.erasure);
    }
    for prompt in [None, Some(HONEST_PROMPT)] {
        let inputs = BundleInputs {
            bytes: data,
            prompt,
            ..BundleInputs::default()
        };
        let report = verify_bundle(&inputs, &f.key_args, None, &f.runtime)
            .expect("a pinned key and no chain: no usage error");
        let _ = (
            render::human(&report),
            render::json(&report),
            report.exit_code(),
        );
        if matches!(report.outcome(Layer::Signature), Some(Outcome::Ok(_))) {
            let bundle = Bundle::parse(data).expect("a verified bundle parses");
            let receipt = serde_json::to_vec(&bundle.receipt).expect("a Value serialises");
            assert!(
                Receipt::verify_json(&receipt, &f.pinned).is_ok(),
                "signature layer passed on a receipt ledger refuses"
            );
        }
    }
});
