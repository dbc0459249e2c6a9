//! The commitment layer: does disclosed content, with the receipt's salts, open the
//! commitments in the signed body?
//!
//! Three answers, kept apart: the content opens (ok); the salts are gone because the log
//! erased this record (erased — a logged event, not tampering); or the content or salt
//! differs (failed). A prompt file that is JSON but not in RFC 8785 form is also tried in
//! its canonical form, because the service commits to the canonical bytes.

use sworn_ledger::commitment::{Commitment, Domain, Salt, opens};
use sworn_ledger::entry::ReceiptJson;
use sworn_ledger::jcs;
use sworn_ledger::receipt::ReceiptBody;

use crate::report::{Layer, Outcome, Report};

/// Disclosed content to check against a receipt.
#[derive(Debug, Clone, Copy)]
pub struct Disclosure<'a> {
    /// The prompt content (canonical bytes, or JSON to canonicalise).
    pub prompt: &'a [u8],
    /// The response content.
    pub response: &'a [u8],
}

/// Records the commitment layer for `receipt` (whose signature is checked separately).
pub fn check_content(receipt: &ReceiptJson, disclosure: Disclosure<'_>, report: &mut Report) {
    let outcome = content_outcome(receipt, disclosure);
    report.set(Layer::Commitment, true, outcome);
}

fn content_outcome(receipt: &ReceiptJson, disclosure: Disclosure<'_>) -> Outcome {
    let body = match ReceiptBody::parse_canonical(receipt.body.as_bytes()) {
        Ok(body) => body,
        Err(e) => return Outcome::Failed(format!("receipt body is not a valid v1 body: {e}")),
    };
    let Some(salts) = receipt.salts else {
        return Outcome::Erased(
            "the log erased this record's content and salts; its commitments can no longer be \
             opened (erasure is a logged event, not tampering)"
                .into(),
        );
    };
    let prompt = opening(
        &body.prompt.commitment,
        Domain::Prompt,
        &salts.prompt,
        disclosure.prompt,
    );
    let response = opening(
        &body.response.commitment,
        Domain::Response,
        &salts.response,
        disclosure.response,
    );
    match (prompt, response) {
        (Some(p), Some(r)) => Outcome::Ok(format!(
            "prompt ({} bytes{p}) and response ({} bytes{r}) open the signed commitments",
            disclosure.prompt.len(),
            disclosure.response.len()
        )),
        (p, r) => {
            let mut wrong = Vec::new();
            if p.is_none() {
                wrong.push("prompt");
            }
            if r.is_none() {
                wrong.push("response");
            }
            Outcome::Failed(format!(
                "{} do(es) not open the signed commitment: the content or its salt differs",
                wrong.join(" and ")
            ))
        }
    }
}

/// `Some(note)` when `content` (or its RFC 8785 form) opens `commitment`.
fn opening(
    commitment: &Commitment,
    domain: Domain,
    salt: &Salt,
    content: &[u8],
) -> Option<&'static str> {
    if opens(commitment, domain, salt, content) {
        return Some("");
    }
    let canonical = serde_json::from_slice::<serde_json::Value>(content)
        .ok()
        .and_then(|v| jcs::canonicalize(&v).ok())?;
    opens(commitment, domain, salt, &canonical).then_some(", in RFC 8785 form")
}
