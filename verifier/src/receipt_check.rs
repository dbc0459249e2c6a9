//! One receipt bundle, verified with whatever the auditor disclosed beside it: the offline
//! layers, the commitment layer (content, a completion response's answer text, or the
//! erasure event), and the chain layers. `receipt` and `content` both come here.

use sworn_ledger::anchor::{chain_keys, history_from_chain, log_id};
use sworn_ledger::ijson;
use sworn_ledger::key_history::KeyHistory;
use sworn_ledger::receipt::ReceiptBody;
use tokio::runtime::Runtime;

use crate::bundle::Bundle;
use crate::chain::{ChainPins, ChainReader, check_anchor};
use crate::cli::KeyArgs;
use crate::command_error::CommandError;
use crate::content::{Disclosure, check_content};
use crate::erasure::check_erasure;
use crate::offline::{OfflineResult, check_offline};
use crate::report::{Layer, Outcome, Report};
use crate::trust::load_key;

/// Verifies a bundle's bytes: the bundle, offline and (with a chain) anchor layers.
pub fn verify_bundle_bytes(
    bytes: &[u8],
    key_args: &KeyArgs,
    chain: Option<&(ChainReader, ChainPins)>,
    rt: &Runtime,
) -> Result<Report, CommandError> {
    let inputs = BundleInputs {
        bytes,
        ..BundleInputs::default()
    };
    verify_bundle(&inputs, key_args, chain, rt)
}

/// What an auditor hands over with a bundle.
#[derive(Debug, Clone, Copy, Default)]
pub struct BundleInputs<'a> {
    /// The bundle file's bytes.
    pub bytes: &'a [u8],
    /// Disclosed prompt content (exact bytes), for the commitment layer.
    pub prompt: Option<&'a [u8]>,
    /// Disclosed response content (exact bytes), for the commitment layer.
    pub response: Option<&'a [u8]>,
    /// The disclosed `response_format` (exact canonical bytes), for the commitment layer.
    pub response_format: Option<&'a [u8]>,
    /// The disclosed tools (exact canonical bytes), for the commitment layer.
    pub tools: Option<&'a [u8]>,
    /// The request id the bundle was asked for: a server that answers with another
    /// request's (valid) receipt must not pass.
    pub request_id: Option<&'a str>,
}

/// Verifies a bundle with whatever was disclosed beside it: every offline layer, the
/// commitment layer when content, an answer text or an erasure event is at hand, and the
/// chain layers when a chain is given (which then also requires inclusion and checkpoint:
/// an anchor vouches for a tree, not for a receipt never shown to be in it).
pub fn verify_bundle(
    inputs: &BundleInputs<'_>,
    key_args: &KeyArgs,
    chain: Option<&(ChainReader, ChainPins)>,
    rt: &Runtime,
) -> Result<Report, CommandError> {
    let mut report = Report::new("receipt");
    let bundle = match Bundle::parse(inputs.bytes) {
        Ok(b) => b,
        Err(e) => {
            report.set(Layer::Bundle, true, Outcome::Failed(e.to_string()));
            return Ok(report);
        }
    };
    let key = resolve_key(key_args, chain, rt)?;
    let offline = check_offline(&bundle, key.as_ref().ok(), &mut report);
    report.set(
        Layer::Bundle,
        true,
        bundle_outcome(&bundle, &offline, inputs),
    );
    if let Err(reason) = &key {
        report.set(Layer::Signature, true, Outcome::Failed(reason.clone()));
        if bundle.checkpoint.is_some() {
            report.set(Layer::Checkpoint, true, Outcome::Failed(reason.clone()));
        }
    }
    check_commitment(&bundle, &offline, key.as_ref().ok(), inputs, &mut report);
    match chain {
        None => {
            report.set(
                Layer::Anchor,
                false,
                Outcome::Skipped("no --rpc/--contract: not checked on chain".into()),
            );
            report.set(
                Layer::Finality,
                false,
                Outcome::Skipped("no --rpc/--contract".into()),
            );
        }
        Some((reader, pins)) => {
            report.require(Layer::Inclusion);
            report.require(Layer::Checkpoint);
            let origin = key
                .as_ref()
                .map(|k| k.origin().to_string())
                .unwrap_or_default();
            rt.block_on(check_anchor(
                reader,
                pins,
                &origin,
                offline.checkpoint.as_ref(),
                bundle.anchor.as_ref(),
                &mut report,
            ));
        }
    }
    Ok(report)
}

/// The bundle layer: its sections, and that it is the receipt that was asked for.
fn bundle_outcome(bundle: &Bundle, offline: &OfflineResult, inputs: &BundleInputs<'_>) -> Outcome {
    if let Some(wanted) = inputs.request_id {
        let answered = offline
            .receipt_json
            .as_ref()
            .and_then(|json| ReceiptBody::parse_canonical(json.body.as_bytes()).ok())
            .map(|body| body.request_id);
        match answered {
            Some(id) if id == wanted => {}
            Some(id) => {
                return Outcome::Failed(format!(
                    "asked for the receipt of request {wanted:?}, the server answered with the \
                     receipt of request {id:?}"
                ));
            }
            None => {
                return Outcome::Failed(format!(
                    "asked for the receipt of request {wanted:?}, the answer has no readable \
                     receipt body to bind it to"
                ));
            }
        }
    }
    let sections: Vec<&str> = [
        Some("receipt"),
        bundle.inclusion.as_ref().map(|_| "inclusion proof"),
        bundle.checkpoint.as_ref().map(|_| "checkpoint"),
        bundle.anchor.as_ref().map(|_| "anchor record"),
        bundle.erasure.as_ref().map(|_| "erasure event"),
        bundle.answer.as_ref().map(|_| "answer text"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut detail = format!("sections: {}", sections.join(", "));
    if let Some(wanted) = inputs.request_id {
        detail.push_str(&format!("; the receipt of request {wanted:?}, as asked"));
    }
    Outcome::Ok(detail)
}

/// The commitment layer, when there is anything to open or an erasure to believe: the
/// disclosed content, the answer text a completion response carries beside its salts, or
/// the bundle's erasure event.
fn check_commitment(
    bundle: &Bundle,
    offline: &OfflineResult,
    key: Option<&KeyHistory>,
    inputs: &BundleInputs<'_>,
    report: &mut Report,
) {
    let disclosed = inputs.prompt.is_some() || inputs.response.is_some();
    if !disclosed && bundle.answer.is_none() && bundle.erasure.is_none() {
        return;
    }
    let Some(json) = &offline.receipt_json else {
        report.set(
            Layer::Commitment,
            true,
            Outcome::Failed("no readable receipt in the file".into()),
        );
        return;
    };
    if let (Some(answer), Some(response)) = (&bundle.answer, inputs.response) {
        if answer.as_bytes() != response {
            report.set(
                Layer::Commitment,
                true,
                Outcome::Failed("the file's answer text and the --response content differ".into()),
            );
            return;
        }
    }
    let erasure = bundle.erasure.as_ref().map(|section| {
        check_erasure(
            section,
            offline.receipt.as_ref(),
            key,
            offline.checkpoint.as_ref(),
        )
    });
    let disclosure = Disclosure {
        prompt: inputs.prompt,
        response: inputs
            .response
            .or(bundle.answer.as_deref().map(str::as_bytes)),
        response_format: inputs.response_format,
        tools: inputs.tools,
    };
    check_content(json, disclosure, erasure, report);
}

/// The pinned keys: from `--key` (a key, or the log's key history), or from the contract
/// (every key it records for the log, each from the tree size anchored just before the
/// seq it applies from). An `Err(reason)` is reported as a failed signature layer.
fn resolve_key(
    args: &KeyArgs,
    chain: Option<&(ChainReader, ChainPins)>,
    rt: &Runtime,
) -> Result<Result<KeyHistory, String>, CommandError> {
    if let Some(arg) = &args.key {
        return load_key(arg)
            .map(Ok)
            .map_err(|e| CommandError::Usage(e.to_string()));
    }
    if !args.from_chain {
        return Err(CommandError::Usage(
            "--key or --from-chain is needed".into(),
        ));
    }
    let (Some(origin), Some((reader, _))) = (&args.origin, chain) else {
        return Err(CommandError::Usage(
            "--from-chain needs --origin, --rpc and --contract".into(),
        ));
    };
    Ok(match rt.block_on(chain_keys(reader, log_id(origin))) {
        Ok(Some(keys)) => history_from_chain(origin, &keys),
        Ok(None) => Err(format!(
            "the contract has no log {origin:?}: no key to take from the chain"
        )),
        Err(e) => Err(format!("could not take the key from the chain: {e}")),
    })
}

/// The commitment layer alone, for an auditor without the log's key.
pub(crate) fn unauthenticated_content(inputs: &BundleInputs<'_>) -> Report {
    let mut report = Report::new("content");
    report.set(
        Layer::Signature,
        false,
        Outcome::Skipped("no --key: the receipt itself is not authenticated".into()),
    );
    let bundle = match Bundle::parse(inputs.bytes) {
        Ok(b) => b,
        Err(e) => {
            report.set(Layer::Bundle, true, Outcome::Failed(e.to_string()));
            return report;
        }
    };
    let offline = OfflineResult {
        receipt_json: ijson::object_as(&bundle.receipt, &["salts"]).ok(),
        ..OfflineResult::default()
    };
    check_commitment(&bundle, &offline, None, inputs, &mut report);
    report
}
