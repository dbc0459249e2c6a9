//! C2SP signed notes (`note::parse_note`, `verify_note`), checkpoint text
//! (`Checkpoint::parse_text`), signed checkpoints (`SignedCheckpoint::verify`, pinned to
//! the verifier vectors' key) and the auditor's checkpoint input (`watch::checkpoint_input`,
//! note text or `/v1/audit/checkpoint` JSON), on arbitrary bytes.
//!
//! Invariants: the formats have one spelling each — accepted checkpoint text is exactly
//! `to_text()` of what was parsed, and an accepted note is exactly its text and signature
//! lines written back (the anchored note hash cannot be varied without re-signing); a
//! checkpoint signed here verifies under the matching pinned key.

#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use libfuzzer_sys::fuzz_target;
use sworn_ledger::checkpoint::{Checkpoint, SignedCheckpoint};
use sworn_ledger::keys::{LogKey, PinnedKey};
use sworn_ledger::note::{Note, parse_note, verify_note};
use sworn_verifier::watch::checkpoint_input;

const VECTORS_KEY: &str = include_str!("../../verifier/tests/vectors/key.vkey");

fn pinned() -> &'static PinnedKey {
    static KEY: OnceLock<PinnedKey> = OnceLock::new();
    KEY.get_or_init(|| PinnedKey::from_vkey(VECTORS_KEY.trim()).expect("vectors key"))
}

fn written_back(note: &Note) -> String {
    let mut out = format!("{}\n", note.text);
    for sig in &note.signatures {
        let mut blob = sig.key_id.to_vec();
        blob.extend_from_slice(&sig.signature);
        out.push_str(&format!("\u{2014} {} {}\n", sig.name, BASE64.encode(blob)));
    }
    out
}

fuzz_target!(|data: &[u8]| {
    if let Ok(input) = checkpoint_input(data) {
        if let (Some(section), Ok(signed)) = (
            &input.section,
            SignedCheckpoint::verify(&input.note, pinned(), pinned().name()),
        ) {
            let _ = section.disagreements(&signed.checkpoint);
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(checkpoint) = Checkpoint::parse_text(text) {
        assert_eq!(
            checkpoint.to_text(),
            text,
            "checkpoint text has another spelling"
        );
        let key = LogKey::from_seed([7; 32]);
        if let Ok(signed) = SignedCheckpoint::sign(checkpoint.clone(), &key) {
            let pinned = key
                .pinned(&checkpoint.origin)
                .expect("signed under this name");
            let verified = SignedCheckpoint::verify(&signed.note, &pinned, &checkpoint.origin)
                .expect("a checkpoint signed here verifies");
            assert_eq!(verified, signed);
        }
    }
    if let Ok(note) = parse_note(text) {
        assert_eq!(written_back(&note), text, "note has another spelling");
        let _ = Checkpoint::parse_text(&note.text);
    }
    if let Ok(signed_text) = verify_note(text, pinned()) {
        assert!(text.starts_with(&signed_text));
    }
    if let Ok(signed) = SignedCheckpoint::verify(text, pinned(), pinned().name()) {
        assert_eq!(signed.note, text);
        assert_eq!(signed.checkpoint.origin, pinned().name());
    }
});
