//! Group commit: a builder, a flusher and a recorder thread, in a pipeline.
//!
//! Appenders hand a prepared request (content already committed in their own thread) to
//! the builder, which takes everything queued (up to `max_batch`), assigns indices, signs,
//! extends the in-memory right edge of the tree, and applies the whole group as **one
//! atomic sled batch** — entry packs, content, subtree hashes and the new size — then
//! adds the group's request ids to the request-id index.
//! The flusher then takes every group applied so far and calls `flush` (fsync) once for
//! all of them. The recorder takes every group flushed so far, writes the high-water
//! record (see `highwater`) once for all of them — the largest size and its root — with
//! `fdatasync`, and only then publishes the new durable size and answers the appenders.
//! While the recorder waits on its sync, the flusher is already flushing the next groups,
//! and the builder preparing the ones after.
//!
//! A receipt is therefore never acknowledged (nor visible to readers or the sealer) before
//! it is durable in sled and in the record; whatever sled recovers after a crash is a
//! prefix of whole groups, whose `size` key is exact, and at least what the record names.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{Receiver, SyncSender};

use time::OffsetDateTime;

use crate::entry::{ErasedRef, ErasureBody, ErasureKind, Receipt, ReceiptSalts, SignedEntry};
use crate::keys::Signature;
use crate::merkle::{CompactRange, Hash, NewNode, hash_leaf};
use crate::receipt::{BODY_VERSION, ModelInfo, ReceiptBody, format_time};

use super::append::ErasureOutcome;
use super::compact::{ModelId, compact_for, model_row};
use super::error::StoreError;
use super::group::GroupWrite;
use super::pack::node_is_stored;
use super::request_index::fingerprint;
use super::schema::{
    EntryRow, StoredBody, StoredContent, content_key, encode_content, erased_key, hash_key,
    meta_key, model_key,
};
use super::shared::Shared;

/// Where to send the answer to one job: a blocking caller or an async one.
#[derive(Debug)]
pub(crate) enum Reply<T> {
    /// A thread blocked in `append`.
    Blocking(SyncSender<Result<T, StoreError>>),
    /// A task awaiting `append_async`.
    Async(tokio::sync::oneshot::Sender<Result<T, StoreError>>),
}

impl<T> Reply<T> {
    /// Answers the caller; a caller that has gone away (client disconnected) is ignored —
    /// the entry is durable either way.
    pub(crate) fn send(self, result: Result<T, StoreError>) {
        match self {
            Reply::Blocking(tx) => {
                let _ = tx.send(result);
            }
            Reply::Async(tx) => {
                let _ = tx.send(result);
            }
        }
    }
}

/// An append whose content has been committed and whose body (all but index) is validated.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// The body with a placeholder index.
    pub(crate) template: ReceiptBody,
    /// Its canonical bytes after `{"index":N` (computed in the caller's thread).
    pub(crate) tail: Vec<u8>,
    /// Salts and content to store.
    pub(crate) content: StoredContent,
}

/// Work for the builder.
#[derive(Debug)]
pub(crate) enum Job {
    /// Append a receipt.
    Append {
        prepared: Box<Prepared>,
        reply: Reply<Receipt>,
    },
    /// Erase one receipt's content and log the erasure.
    Erase {
        request_id: String,
        time: OffsetDateTime,
        reply: Reply<ErasureOutcome>,
    },
}

/// A job that made it into an applied group, waiting for the flush.
#[allow(clippy::large_enum_variant)] // One per pending append; boxing adds an allocation each.
enum Done {
    Append(Reply<Receipt>, Receipt),
    Erase(Reply<ErasureOutcome>, ErasureOutcome),
}

/// One applied sled batch and the size it brings the log to.
pub(crate) struct Group {
    size: u64,
    /// The root of the log at `size`, for the high-water record.
    root: Hash,
    done: Vec<Done>,
    /// The subtree hashes it stored, for the node cache once durable.
    nodes: Vec<NewNode>,
}

/// The builder loop: runs until every `Ledger` handle is dropped.
pub(crate) fn run_builder(
    shared: &Shared,
    jobs: &Receiver<Job>,
    groups: &SyncSender<Group>,
    mut range: CompactRange,
    max_batch: usize,
) {
    while let Ok(first) = jobs.recv() {
        let mut batch = Vec::with_capacity(max_batch.min(4096));
        batch.push(first);
        while batch.len() < max_batch {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if shared.fault.get().is_some() {
            refuse(shared, batch);
            continue;
        }
        if let Some(group) = build_group(shared, &mut range, batch) {
            if groups.send(group).is_err() {
                break;
            }
        }
    }
}

/// Answers every job with the latched fault.
fn refuse(shared: &Shared, jobs: Vec<Job>) {
    for job in jobs {
        let halted = shared.fault.halted().unwrap_or(StoreError::Closed);
        match job {
            Job::Append { reply, .. } => reply.send(Err(halted)),
            Job::Erase { reply, .. } => reply.send(Err(halted)),
        }
    }
}

fn build_group(shared: &Shared, range: &mut CompactRange, jobs: Vec<Job>) -> Option<Group> {
    let before = range.clone();
    let mut write = GroupWrite::new(range.size());
    let mut ids_in_group = HashSet::new();
    let mut erased_in_group = HashSet::new();
    let mut done = Vec::with_capacity(jobs.len());
    for job in jobs {
        match job {
            Job::Append { prepared, reply } => {
                match add_append(shared, range, &mut write, &mut ids_in_group, *prepared) {
                    Ok(receipt) => done.push(Done::Append(reply, receipt)),
                    Err(e) => {
                        shared.fault.raise(&e);
                        reply.send(Err(e));
                    }
                }
            }
            Job::Erase {
                request_id,
                time,
                reply,
            } => match add_erase(
                shared,
                range,
                &mut write,
                &mut erased_in_group,
                &request_id,
                time,
            ) {
                Ok(outcome) => done.push(Done::Erase(reply, outcome)),
                Err(e) => {
                    shared.fault.raise(&e);
                    reply.send(Err(e));
                }
            },
        }
    }
    if done.is_empty() {
        return None;
    }
    sign_group(shared, &mut done);
    let mut models = GroupModels::default();
    for d in &done {
        if let Done::Append(_, r) = d {
            let body = models.stored_body(shared, &mut write.batch, r);
            let salts = r.salts.map(|s| (s.prompt, s.response));
            write.rows.push((
                r.entry.index,
                EntryRow::encode(&r.entry.signature, &r.leaf_hash, salts, &body),
            ));
        }
    }
    write
        .batch
        .insert(&meta_key("size")[..], &range.size().to_be_bytes()[..]);
    let requests = std::mem::take(&mut write.requests);
    let applied = write
        .finish(shared)
        .and_then(|()| Ok(shared.log.apply_batch(write.batch)?));
    if applied.is_ok() {
        if !models.added.is_empty() {
            // Before the group is durable, so no reader meets an entry whose model is
            // unknown.
            let mut known = shared.models.write().unwrap_or_else(|p| p.into_inner());
            known.extend(models.added);
        }
        // The index learns the group once it is applied; a full memtable becomes a run
        // covering everything applied so far. The group stands either way: a run that
        // cannot be written stays in the memtable, and the next group tries again.
        if shared.requests.add(&requests) {
            if let Err(e) = shared.requests.flush(&shared.log, range.size()) {
                tracing::error!(error = %e, "request-id index run not written; kept in memory");
            }
        }
    }
    if let Err(e) = applied {
        shared.fault.raise(&e);
        *range = before;
        for d in done {
            match d {
                Done::Append(reply, _) => reply.send(Err(storage_fault(&e))),
                Done::Erase(reply, _) => reply.send(Err(storage_fault(&e))),
            }
        }
        return None;
    }
    Some(Group {
        size: range.size(),
        root: range.root(),
        done,
        nodes: write.nodes,
    })
}

/// A copy of a failed group's storage fault for each of its callers.
fn storage_fault(e: &StoreError) -> StoreError {
    match e {
        StoreError::Sled(e) => StoreError::Sled(e.clone()),
        StoreError::Corrupt { what } => StoreError::corrupt(what.clone()),
        StoreError::HighWaterRecord { path, reason } => StoreError::HighWaterRecord {
            path: path.clone(),
            reason: reason.clone(),
        },
        StoreError::Closed => StoreError::Closed,
        StoreError::Halted { cause } => StoreError::Halted {
            cause: cause.clone(),
        },
        other => StoreError::corrupt(other.to_string()),
    }
}

/// The model dictionary as one group sees it: rows it adds, and the last model it looked up
/// (a deployment serves one model, so that is nearly always the one).
#[derive(Default)]
struct GroupModels {
    added: HashMap<ModelId, ModelInfo>,
    last: Option<(ModelInfo, ModelId)>,
}

impl GroupModels {
    /// How `receipt`'s body is stored: compact when its model has (or gets, in `batch`) a
    /// dictionary row and the compact form rebuilds the signed bytes exactly; JSON otherwise.
    fn stored_body(
        &mut self,
        shared: &Shared,
        batch: &mut sled::Batch,
        receipt: &Receipt,
    ) -> StoredBody {
        let json = || StoredBody::Json(receipt.entry.body.clone());
        let model = &receipt.body.model;
        let id = match &self.last {
            Some((last, id)) if last == model => *id,
            _ => {
                let Some((id, row)) = model_row(model) else {
                    return json();
                };
                let known = shared.models.read().unwrap_or_else(|p| p.into_inner());
                match known.get(&id).or_else(|| self.added.get(&id)) {
                    Some(stored) if stored == model => {}
                    // Another model under the same 64-bit id: keep this body as JSON.
                    Some(_) => return json(),
                    None => {
                        batch.insert(&model_key(&id)[..], row);
                        self.added.insert(id, model.clone());
                    }
                }
                self.last = Some((model.clone(), id));
                id
            }
        };
        match compact_for(&receipt.body, &receipt.entry.body, id) {
            Some(compact) => StoredBody::Compact(compact),
            None => json(),
        }
    }
}

/// Placeholder until `sign_group` signs the entry (never stored or returned).
fn unsigned() -> Signature {
    Signature::from_bytes(&[0; 64])
}

/// Groups at least this large are signed on two threads: signing is the largest CPU cost
/// of an append and the builder would otherwise do it alone.
const PARALLEL_SIGN_MIN: usize = 16;

/// Signs every receipt of the group, on two threads when it is large enough.
fn sign_group(shared: &Shared, done: &mut [Done]) {
    let mut entries: Vec<&mut SignedEntry> = done
        .iter_mut()
        .filter_map(|d| match d {
            Done::Append(_, r) => Some(&mut r.entry),
            Done::Erase(..) => None,
        })
        .collect();
    let sign = |part: &mut [&mut SignedEntry]| {
        for e in part.iter_mut() {
            e.signature = shared.key.sign(&e.body);
        }
    };
    if entries.len() < PARALLEL_SIGN_MIN {
        sign(&mut entries);
        return;
    }
    let half = entries.len() / 2;
    let (first, second) = entries.split_at_mut(half);
    std::thread::scope(|s| {
        s.spawn(|| sign(first));
        sign(second);
    });
}

fn insert_nodes(shared: &Shared, write: &mut GroupWrite, nodes: Vec<NewNode>) {
    // Leaf hashes are stored in their entry rows, and the levels above them inside a pack
    // are rebuilt from it.
    let stored = |n: &&NewNode| n.level > 0 && node_is_stored(n.level, n.index, shared.packs_from);
    for node in nodes.iter().filter(stored) {
        write
            .batch
            .insert(&hash_key(node.level, node.index)[..], &node.hash.0[..]);
    }
    write.nodes.extend(nodes);
}

fn add_append(
    shared: &Shared,
    range: &mut CompactRange,
    write: &mut GroupWrite,
    ids_in_group: &mut HashSet<String>,
    prepared: Prepared,
) -> Result<Receipt, StoreError> {
    let Prepared {
        mut template,
        tail,
        content,
    } = prepared;
    if ids_in_group.contains(&template.request_id)
        || shared.request_index(&template.request_id)?.is_some()
    {
        return Err(StoreError::DuplicateRequestId {
            request_id: template.request_id,
        });
    }
    let index = range.size();
    template.index = index;
    let body = ReceiptBody::splice_index(index, &tail);
    let content_value = encode_content(&content).ok_or(StoreError::ContentTooLarge {
        field: "prompt",
        len: content.prompt.len(),
        max: u32::MAX as usize,
    })?;
    let leaf_hash = hash_leaf(&body);
    let nodes = range
        .push(leaf_hash)
        .ok_or_else(|| StoreError::corrupt("the log is full"))?;
    // The entry itself is inserted once the group is signed (see `sign_group`); it holds
    // the salts, so empty content needs no row of its own.
    if !content.prompt.is_empty() || !content.response.is_empty() {
        write.content.push((index, content_value));
    }
    write
        .requests
        .push((fingerprint(&template.request_id), index));
    insert_nodes(shared, write, nodes);
    ids_in_group.insert(template.request_id.clone());
    Ok(Receipt {
        entry: SignedEntry {
            index,
            body,
            signature: unsigned(),
        },
        body: template,
        leaf_hash,
        salts: Some(ReceiptSalts {
            prompt: content.prompt_salt,
            response: content.response_salt,
        }),
    })
}

fn add_erase(
    shared: &Shared,
    range: &mut CompactRange,
    write: &mut GroupWrite,
    erased_in_group: &mut HashSet<u64>,
    request_id: &str,
    time: OffsetDateTime,
) -> Result<ErasureOutcome, StoreError> {
    let not_found = || StoreError::NotFound {
        what: format!("request id {request_id:?}"),
    };
    let target = shared.request_index(request_id)?.ok_or_else(not_found)?;
    // Only durable receipts can be erased: the client has its receipt in hand.
    if target >= shared.durable_size.get() {
        return Err(not_found());
    }
    let row = shared
        .entry_row(target)?
        .ok_or_else(|| StoreError::corrupt(format!("entry {target} missing")))?;
    let erased = match &row {
        EntryRow::Current { salts, .. } => salts.is_none(),
        EntryRow::Earlier { .. } => !shared.log.contains_key(content_key(target))?,
    };
    if erased_in_group.contains(&target) || erased {
        return Err(StoreError::AlreadyErased {
            request_id: request_id.to_string(),
        });
    }
    let erased_leaf = match &row {
        EntryRow::Current { leaf, .. } => *leaf,
        EntryRow::Earlier { body, .. } => hash_leaf(body),
    };
    if let EntryRow::Current {
        signature,
        leaf,
        body,
        ..
    } = &row
    {
        // The same row without its salts.
        write
            .rows
            .push((target, EntryRow::encode(signature, leaf, None, body)));
    }
    let index = range.size();
    let event = ErasureBody {
        v: BODY_VERSION,
        kind: ErasureKind::Erasure,
        log: shared.origin.clone(),
        index,
        time: format_time(time).ok_or(StoreError::Body(crate::receipt::BodyError::Field {
            field: "time",
            reason: "outside years 0-9999",
        }))?,
        erased: ErasedRef {
            index: target,
            leaf_hash: erased_leaf,
        },
    };
    let body = event.to_canonical_bytes()?;
    let signature = shared.key.sign(&body);
    let leaf_hash = hash_leaf(&body);
    let nodes = range
        .push(leaf_hash)
        .ok_or_else(|| StoreError::corrupt("the log is full"))?;
    write.erased.push(target);
    write
        .batch
        .insert(&erased_key(target)[..], &index.to_be_bytes()[..]);
    write.rows.push((
        index,
        EntryRow::encode(
            &signature,
            &leaf_hash,
            None,
            &StoredBody::Json(body.clone()),
        ),
    ));
    insert_nodes(shared, write, nodes);
    erased_in_group.insert(target);
    Ok(ErasureOutcome {
        erased_index: target,
        event: SignedEntry {
            index,
            body,
            signature,
        },
        leaf_hash,
    })
}

/// Answers every caller of `groups` with a copy of `error`.
fn fail(groups: Vec<Group>, error: &StoreError) {
    for group in groups {
        for d in group.done {
            match d {
                Done::Append(reply, _) => reply.send(Err(storage_fault(error))),
                Done::Erase(reply, _) => reply.send(Err(storage_fault(error))),
            }
        }
    }
}

/// The flusher loop: one `flush` for every group applied since the last one, then on to
/// the recorder.
pub(crate) fn run_flusher(
    shared: &Shared,
    groups: &Receiver<Group>,
    flushed: &SyncSender<Vec<Group>>,
) {
    while let Ok(first) = groups.recv() {
        let mut pending = vec![first];
        while let Ok(more) = groups.try_recv() {
            pending.push(more);
        }
        if let Err(e) = shared.db.flush() {
            let e = StoreError::Sled(e);
            shared.fault.raise(&e);
            fail(pending, &e);
            // What is on disk is now unknown: stop, so no later append is acknowledged on
            // top of it. Reopening recovers to the last durable state.
            break;
        }
        if let Err(unrecorded) = flushed.send(pending) {
            // The recorder stopped on a failed record write.
            fail(
                unrecorded.0,
                &shared.fault.halted().unwrap_or(StoreError::Closed),
            );
            break;
        }
    }
}

/// The recorder loop: one high-water record write for every group flushed since the last
/// one, then publish and answer.
pub(crate) fn run_recorder(shared: &Shared, flushed: &Receiver<Vec<Group>>) {
    while let Ok(mut pending) = flushed.recv() {
        while let Ok(more) = flushed.try_recv() {
            pending.extend(more);
        }
        let Some((size, root)) = pending.iter().map(|g| (g.size, g.root)).max_by_key(|g| g.0)
        else {
            continue;
        };
        if let Err(e) = shared.high_water.acknowledge(size, root) {
            tracing::error!(error = %e, "the high-water record was not written; appends stop");
            shared.fault.raise(&e);
            fail(pending, &e);
            // Nothing may be acknowledged that the record does not cover: stop.
            break;
        }
        for group in &mut pending {
            shared.nodes.extend(&std::mem::take(&mut group.nodes));
        }
        shared.publish_durable(size);
        for group in pending {
            for d in group.done {
                match d {
                    Done::Append(reply, receipt) => reply.send(Ok(receipt)),
                    Done::Erase(reply, outcome) => reply.send(Ok(outcome)),
                }
            }
        }
    }
}
