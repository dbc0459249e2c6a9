//! The commitment layer: does disclosed content, with the receipt's salts, open the
//! commitments in the signed body?
//!
//! Three answers, kept apart: the content opens (ok); the log erased this record (erased
//! — only with the log's signed erasure event as evidence, see [`crate::erasure`]); or
//! anything else (failed): content or salt differs, or the salts are simply missing.
//!
//! Commitments open on the **exact** committed bytes. The verifier never re-parses or
//! re-canonicalises what it is given: `{ "approved" : true }` does not open a commitment
//! to `{"approved":true}`, and a prompt with a duplicate member (`"content"` twice, one of
//! them "wire the money") is refused as not I-JSON before anything is hashed. The
//! service commits to the canonical (RFC 8785) prompt it answered, which is the form the
//! auditor must be given.

use sworn_ledger::commitment::{Domain, opens};
use sworn_ledger::entry::ReceiptJson;
use sworn_ledger::ijson;
use sworn_ledger::receipt::ReceiptBody;

use crate::report::{Layer, Outcome, Report};

/// Disclosed content to check against a receipt.
#[derive(Debug, Clone, Copy)]
pub struct Disclosure<'a> {
    /// The prompt content (its exact canonical bytes), when disclosed.
    pub prompt: Option<&'a [u8]>,
    /// The response content (the answer text's exact bytes), when disclosed.
    pub response: Option<&'a [u8]>,
    /// The request's `response_format` member (its exact canonical bytes), when disclosed:
    /// checked against the receipt's hash of it, and the opened answer against it
    /// ([`crate::response_format`]).
    pub response_format: Option<&'a [u8]>,
    /// The tools offered with the request (exact canonical bytes), when disclosed: checked
    /// against the receipt's hash of them, and the opened answer's calls against them
    /// ([`crate::tools`]).
    pub tools: Option<&'a [u8]>,
}

/// Records the commitment layer for `receipt` (whose signature is checked separately).
/// `erasure` is the verdict on the bundle's erasure section, when it has one.
pub fn check_content(
    receipt: &ReceiptJson,
    disclosure: Disclosure<'_>,
    erasure: Option<Result<String, String>>,
    report: &mut Report,
) {
    let outcome = content_outcome(receipt, disclosure, erasure);
    report.set(Layer::Commitment, true, outcome);
}

fn content_outcome(
    receipt: &ReceiptJson,
    disclosure: Disclosure<'_>,
    erasure: Option<Result<String, String>>,
) -> Outcome {
    let body = match ReceiptBody::parse_canonical(receipt.body.as_bytes()) {
        Ok(body) => body,
        Err(e) => return Outcome::Failed(format!("receipt body is not a valid v1 body: {e}")),
    };
    let salts = match (receipt.salts, erasure) {
        (None, Some(Ok(evidence))) => return Outcome::Erased(evidence),
        (None, Some(Err(reason))) => {
            return Outcome::Failed(format!(
                "the salts are absent and the bundle's erasure event does not hold: {reason}"
            ));
        }
        (None, None) => {
            return Outcome::Failed(
                "the salts are absent and the bundle carries no signed erasure event: nothing \
                 shows the log erased this record (fetch the bundle from \
                 /v1/audit/receipts/{id}, which carries it)"
                    .into(),
            );
        }
        (Some(_), Some(_)) => {
            return Outcome::Failed(
                "the bundle carries salts and an erasure event for the same record: an \
                 erased record has no salts"
                    .into(),
            );
        }
        (Some(salts), None) => salts,
    };
    let mut opened = Vec::new();
    let mut wrong = Vec::new();
    if let Some(prompt) = disclosure.prompt {
        if let Err(e) = ijson::parse(prompt) {
            return Outcome::Failed(format!("the prompt file is refused: {e}"));
        }
        if opens(
            &body.prompt.commitment,
            Domain::Prompt,
            &salts.prompt,
            prompt,
        ) {
            opened.push(format!("prompt ({} bytes)", prompt.len()));
        } else {
            wrong.push("prompt");
        }
    }
    if let Some(response) = disclosure.response {
        let commitment = &body.response.commitment;
        if opens(commitment, Domain::Response, &salts.response, response) {
            opened.push(format!("response ({} bytes)", response.len()));
        } else {
            wrong.push("response");
        }
    }
    if !wrong.is_empty() {
        return Outcome::Failed(format!(
            "{} do(es) not open the signed commitment: the content (byte for byte) or its salt \
             differs",
            wrong.join(" and ")
        ));
    }
    if let Some(format) = disclosure.response_format {
        match crate::response_format::check(&body, format, disclosure.response) {
            Ok(held) => opened.push(held),
            Err(reason) => return Outcome::Failed(reason),
        }
    }
    if let Some(tools) = disclosure.tools {
        match crate::tools::check(&body, tools, disclosure.response) {
            Ok(held) => opened.push(held),
            Err(reason) => return Outcome::Failed(reason),
        }
    }
    if opened.is_empty() {
        return Outcome::Skipped("no content was disclosed".into());
    }
    Outcome::Ok(format!(
        "{} open(s) the signed commitment(s), byte for byte",
        opened.join(" and ")
    ))
}
