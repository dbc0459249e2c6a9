//! What a caller hands the store to append ([`AppendRequest`]) and what erasing a
//! receipt's content, which appends a signed event, gives back ([`ErasureOutcome`]).

use std::collections::BTreeMap;

use time::OffsetDateTime;

use crate::entry::SignedEntry;
use crate::merkle::Hash;
use crate::receipt::{ModelInfo, ParamValue};

/// What the service knows about a finished request, to be sworn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendRequest {
    /// Unique request id (`[A-Za-z0-9._:-]`, ≤ 128).
    pub request_id: String,
    /// Tenant (API key id).
    pub tenant: String,
    /// The model that answered.
    pub model: ModelInfo,
    /// Sampling parameters as applied (decimal strings, integers, booleans).
    pub params: BTreeMap<String, ParamValue>,
    /// Canonical prompt content (RFC 8785 bytes of the messages array or prompt string).
    pub prompt: Vec<u8>,
    /// Prompt length in tokens.
    pub prompt_tokens: u64,
    /// Response content as returned to the client.
    pub response: Vec<u8>,
    /// Generated tokens.
    pub response_tokens: u64,
    /// Why generation stopped.
    pub finish_reason: String,
    /// When the answer completed (written as UTC with microseconds).
    pub time: OffsetDateTime,
}

/// The result of erasing one receipt's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureOutcome {
    /// Index of the receipt whose content and salts were deleted.
    pub erased_index: u64,
    /// The signed erasure event appended to the log.
    pub event: SignedEntry,
    /// The event's leaf hash.
    pub leaf_hash: Hash,
}
