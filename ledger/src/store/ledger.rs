//! The [`Ledger`] handle: appends, reads, proofs, erasure, shutdown.

use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use time::OffsetDateTime;

use crate::commitment::{Domain, Salt, commit};
use crate::entry::{EntryBody, Receipt, ReceiptSalts, SignedEntry};
use crate::keys::PinnedKey;
use crate::merkle::{
    ConsistencyProof, Hash, InclusionProof, prove_consistency, prove_inclusion, root,
};
use crate::receipt::{
    BODY_VERSION, BodyError, PromptInfo, ReceiptBody, ReceiptKind, ResponseInfo, format_time,
};

use super::append::{AppendRequest, ErasureOutcome};
use super::config::LedgerConfig;
use super::error::StoreError;
use super::group::content_value;
use super::hashes::SledHashes;
use super::open::{open_shared, prove_err};
use super::schema::{EntryRow, StoredContent, decode_content, decode_u64, erased_key};
use super::sealer::run_sealer;
use super::shared::Shared;
use super::writer::{Job, Prepared, Reply, run_builder, run_flusher, run_recorder};

/// Appended groups waiting for the flusher before the builder blocks (backpressure).
const GROUPS_IN_FLIGHT: usize = 64;

/// A durable, append-only, signed Merkle log. Clone it freely: clones share one store and
/// one writer. The writer and sealer stop when the last clone is dropped (or on
/// [`Ledger::shutdown`]).
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Handle>,
}

struct Handle {
    shared: Arc<Shared>,
    jobs: RwLock<Option<Sender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("origin", &self.inner.shared.origin)
            .field("size", &self.size())
            .finish()
    }
}

impl Handle {
    fn stop(&self) {
        // Closing the job channel lets the builder drain what is queued and exit; the
        // flusher then flushes the last groups, the recorder records and answers them, and
        // both exit too.
        drop(self.jobs.write().unwrap_or_else(|p| p.into_inner()).take());
        self.shared.signal.stop();
        let threads: Vec<_> = self
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Ledger {
    /// Opens (or creates) the ledger at `config.path`, recovering to the last durable
    /// entry, and starts the writer (and, if configured, the sealer).
    pub fn open(config: LedgerConfig) -> Result<Ledger, StoreError> {
        let max_batch = config.max_batch;
        let sealer = config
            .sealer
            .then_some((config.seal_every_entries, config.seal_interval));
        let (shared, range) = open_shared(config)?;
        let (job_tx, job_rx) = mpsc::channel();
        let (group_tx, group_rx) = mpsc::sync_channel(GROUPS_IN_FLIGHT);
        let (flushed_tx, flushed_rx) = mpsc::sync_channel(GROUPS_IN_FLIGHT);
        let spawn_err = |e: std::io::Error| StoreError::Config {
            reason: format!("cannot start a ledger thread: {e}"),
        };
        let mut threads = Vec::new();
        let s = Arc::clone(&shared);
        threads.push(
            std::thread::Builder::new()
                .name("ledger-builder".into())
                .spawn(move || run_builder(&s, &job_rx, &group_tx, range, max_batch))
                .map_err(spawn_err)?,
        );
        let s = Arc::clone(&shared);
        threads.push(
            std::thread::Builder::new()
                .name("ledger-flusher".into())
                .spawn(move || run_flusher(&s, &group_rx, &flushed_tx))
                .map_err(spawn_err)?,
        );
        let s = Arc::clone(&shared);
        threads.push(
            std::thread::Builder::new()
                .name("ledger-recorder".into())
                .spawn(move || run_recorder(&s, &flushed_rx))
                .map_err(spawn_err)?,
        );
        if let Some((every, interval)) = sealer {
            let s = Arc::clone(&shared);
            threads.push(
                std::thread::Builder::new()
                    .name("ledger-sealer".into())
                    .spawn(move || run_sealer(&s, every, interval))
                    .map_err(spawn_err)?,
            );
        }
        Ok(Ledger {
            inner: Arc::new(Handle {
                shared,
                jobs: RwLock::new(Some(job_tx)),
                threads: Mutex::new(threads),
            }),
        })
    }

    pub(super) fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// The log's origin.
    pub fn origin(&self) -> &str {
        &self.inner.shared.origin
    }

    /// The log's public key, pinned under its origin.
    pub fn public_key(&self) -> PinnedKey {
        self.inner.shared.pinned.clone()
    }

    /// Where the high-water record of this store is (see the crate README).
    pub fn high_water_path(&self) -> &std::path::Path {
        self.inner.shared.high_water.path()
    }

    /// The storage fault that stopped this ledger's writes, if one did. From then on
    /// appends, erasures and seals fail with [`StoreError::Halted`] while reads go on; the
    /// store proves itself again only when it is reopened (a restart).
    pub fn fault(&self) -> Option<String> {
        self.inner.shared.fault.get().map(|cause| cause.to_string())
    }

    /// Sees [`Ledger::fault`] change from `None` to the fault's description.
    pub fn watch_fault(&self) -> tokio::sync::watch::Receiver<Option<Arc<str>>> {
        self.inner.shared.fault.subscribe()
    }

    /// Number of durable entries. Every read and proof is limited to this prefix.
    pub fn size(&self) -> u64 {
        self.inner.shared.durable_size.get()
    }

    fn submit(&self, job: Job) -> Result<(), StoreError> {
        let guard = self.inner.jobs.read().unwrap_or_else(|p| p.into_inner());
        let tx = guard.as_ref().ok_or(StoreError::Closed)?;
        tx.send(job).map_err(|_| StoreError::Closed)
    }

    /// Swears to one request: commits its content, appends the signed receipt, and returns
    /// only once it is durable. Blocks the calling thread (use [`Ledger::append_async`]
    /// from async code).
    pub fn append(&self, request: AppendRequest) -> Result<Receipt, StoreError> {
        let prepared = prepare(self.shared(), request)?;
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(Job::Append {
            prepared: Box::new(prepared),
            reply: Reply::Blocking(tx),
        })?;
        rx.recv().map_err(|_| StoreError::Closed)?
    }

    /// [`Ledger::append`] for async callers: awaits durability without blocking the
    /// runtime.
    pub async fn append_async(&self, request: AppendRequest) -> Result<Receipt, StoreError> {
        let prepared = prepare(self.shared(), request)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(Job::Append {
            prepared: Box::new(prepared),
            reply: Reply::Async(tx),
        })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Erases the content and salts of the receipt for `request_id` and appends a signed
    /// erasure event; returns once durable. The receipt's leaf and every proof are
    /// unchanged.
    pub fn erase(&self, request_id: &str) -> Result<ErasureOutcome, StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(Job::Erase {
            request_id: request_id.to_string(),
            time: OffsetDateTime::now_utc(),
            reply: Reply::Blocking(tx),
        })?;
        rx.recv().map_err(|_| StoreError::Closed)?
    }

    /// [`Ledger::erase`] for async callers.
    pub async fn erase_async(&self, request_id: &str) -> Result<ErasureOutcome, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(Job::Erase {
            request_id: request_id.to_string(),
            time: OffsetDateTime::now_utc(),
            reply: Reply::Async(tx),
        })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// The durable entry at `index`, if any.
    pub fn entry(&self, index: u64) -> Result<Option<SignedEntry>, StoreError> {
        if index >= self.size() {
            return Ok(None);
        }
        let shared = self.shared();
        let Some(row) = shared.entry_row(index)? else {
            return Err(StoreError::corrupt(format!(
                "durable entry {index} is missing"
            )));
        };
        let (signature, body) = shared.body_bytes(index, row)?;
        Ok(Some(SignedEntry {
            index,
            body,
            signature,
        }))
    }

    /// Durable entries `[start, end)` in order, read lazily (for exports and audits).
    pub fn entries(
        &self,
        start: u64,
        end: u64,
    ) -> impl Iterator<Item = Result<SignedEntry, StoreError>> + '_ {
        let end = end.min(self.size());
        (start..end).map(move |i| {
            self.entry(i)?
                .ok_or_else(|| StoreError::corrupt(format!("durable entry {i} is missing")))
        })
    }

    /// Index of the durable receipt for `request_id`, if any.
    pub fn index_of(&self, request_id: &str) -> Result<Option<u64>, StoreError> {
        // Read the size first: an entry applied after it is not durable for this answer.
        let size = self.size();
        let index = self.shared().request_index(request_id)?;
        Ok(index.filter(|&i| i < size))
    }

    /// The receipt for `request_id` as a client would have it (salts `None` once erased).
    pub fn receipt_by_request_id(&self, request_id: &str) -> Result<Option<Receipt>, StoreError> {
        let Some(index) = self.index_of(request_id)? else {
            return Ok(None);
        };
        let Some(entry) = self.entry(index)? else {
            return Ok(None);
        };
        let EntryBody::Receipt(body) = EntryBody::parse_canonical(&entry.body)
            .map_err(|e| StoreError::corrupt(format!("entry {index}: {e}")))?
        else {
            return Err(StoreError::corrupt(format!(
                "entry {index} is not a receipt"
            )));
        };
        let salts = self.content(index)?.map(|c| ReceiptSalts {
            prompt: c.prompt_salt,
            response: c.response_salt,
        });
        Ok(Some(Receipt {
            leaf_hash: entry.leaf_hash(),
            entry,
            body,
            salts,
        }))
    }

    /// Stored content and salts of the receipt at `index` (`None` if erased or absent).
    pub fn content(&self, index: u64) -> Result<Option<StoredContent>, StoreError> {
        if index >= self.size() {
            return Ok(None);
        }
        let shared = self.shared();
        if let Some(value) = content_value(shared, index)? {
            return decode_content(&value)
                .map(Some)
                .ok_or_else(|| StoreError::corrupt(format!("content {index}")));
        }
        // No content row: erased, or (current rows) empty content with the salts in the row.
        match shared.entry_row(index)? {
            Some(EntryRow::Current {
                salts: Some((prompt_salt, response_salt)),
                ..
            }) => Ok(Some(StoredContent {
                prompt_salt,
                response_salt,
                prompt: Vec::new(),
                response: Vec::new(),
            })),
            _ => Ok(None),
        }
    }

    /// Index of the erasure event that erased the content of entry `index`, if any.
    pub fn erasure_of(&self, index: u64) -> Result<Option<u64>, StoreError> {
        match self.shared().log.get(erased_key(index))? {
            None => Ok(None),
            Some(v) => decode_u64(&v)
                .map(Some)
                .ok_or_else(|| StoreError::corrupt("erasure index")),
        }
    }

    fn hashes(&self) -> SledHashes<'_> {
        self.shared().hashes()
    }

    fn check_durable(&self, size: u64) -> Result<(), StoreError> {
        let durable = self.size();
        if size > durable {
            return Err(StoreError::InvalidProofRequest {
                reason: format!("size {size} is past the durable size {durable}"),
            });
        }
        Ok(())
    }

    /// RFC 9162 root of the first `size` durable entries (O(log size) reads).
    pub fn root(&self, size: u64) -> Result<Hash, StoreError> {
        self.check_durable(size)?;
        root(&self.hashes(), size).map_err(prove_err)
    }

    /// Inclusion proof of entry `index` in the tree of the first `size` entries
    /// (O(log size) reads).
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<InclusionProof, StoreError> {
        self.check_durable(size)?;
        prove_inclusion(&self.hashes(), index, size).map_err(prove_err)
    }

    /// Consistency proof from the first `old_size` entries to the first `new_size`
    /// (O(log new_size) reads).
    pub fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<ConsistencyProof, StoreError> {
        self.check_durable(new_size)?;
        prove_consistency(&self.hashes(), old_size, new_size).map_err(prove_err)
    }

    /// Stops the writer after it has made everything queued durable, seals a final
    /// checkpoint if anything is new, and stops the sealer. Other clones get
    /// [`StoreError::Closed`] afterwards.
    pub fn shutdown(&self) -> Result<Option<crate::checkpoint::SignedCheckpoint>, StoreError> {
        self.inner.stop();
        self.seal_now()
    }
}

/// Commits the content (in the caller's thread) and validates everything but the index.
fn prepare(shared: &Shared, request: AppendRequest) -> Result<Prepared, StoreError> {
    for (field, len) in [
        ("prompt", request.prompt.len()),
        ("response", request.response.len()),
    ] {
        if len > shared.max_content_bytes {
            return Err(StoreError::ContentTooLarge {
                field,
                len,
                max: shared.max_content_bytes,
            });
        }
    }
    let prompt_salt = Salt::random();
    let response_salt = Salt::random();
    let time = format_time(request.time).ok_or(BodyError::Field {
        field: "time",
        reason: "outside years 0-9999",
    })?;
    let template = ReceiptBody {
        v: BODY_VERSION,
        kind: ReceiptKind::Receipt,
        log: shared.origin.clone(),
        index: 0,
        time,
        request_id: request.request_id,
        tenant: request.tenant,
        model: request.model,
        params: request.params,
        prompt: PromptInfo {
            commitment: commit(Domain::Prompt, &prompt_salt, &request.prompt),
            tokens: request.prompt_tokens,
        },
        response: ResponseInfo {
            commitment: commit(Domain::Response, &response_salt, &request.response),
            tokens: request.response_tokens,
            finish_reason: request.finish_reason,
        },
    };
    let tail = template.canonical_tail()?;
    Ok(Prepared {
        template,
        tail,
        content: StoredContent {
            prompt_salt,
            response_salt,
            prompt: request.prompt,
            response: request.response,
        },
    })
}
