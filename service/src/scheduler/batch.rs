//! The engine thread's continuous-batching loop.
//!
//! Each turn: admit queued requests while the batch has room (blocking only when nothing
//! runs), prefill the next chunk of a long prompt (when the generator prefills in chunks),
//! drop sequences whose client has gone, then advance all running sequences by one
//! batched step. Once [`super::Scheduler::stop`] is called, the next turn cancels
//! everything instead (see [`cancel_all`]) and the loop returns. Per-sequence bookkeeping (stop strings, `max_tokens`, end of sequence) is
//! the synchronous [`Running::accept`], unit-tested without a model.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};

use tokio::sync::mpsc::UnboundedSender;

use super::request::{FinishReason, GenerationEvent, GenerationRequest, TokenLogprob};
use super::stop::StopMatcher;
use super::{Command, Generator, Job, SchedulerStats, Token};

/// A sequence in the running batch.
pub(crate) struct Running<S> {
    sequence: S,
    events: UnboundedSender<GenerationEvent>,
    stop: StopMatcher,
    generated: u32,
    max_tokens: u32,
    /// Log probabilities of tokens whose text is not out yet.
    logprobs: Vec<TokenLogprob>,
}

impl<S> Running<S> {
    fn new(
        sequence: S,
        request: &GenerationRequest,
        events: UnboundedSender<GenerationEvent>,
    ) -> Self {
        Running {
            sequence,
            stop: StopMatcher::new(request.params.stop().to_vec()),
            generated: 0,
            max_tokens: request.params.max_tokens(),
            logprobs: Vec::new(),
            events,
        }
    }

    /// Takes one generated token; returns the finish reason when the sequence is done.
    pub(crate) fn accept(&mut self, token: Token) -> Option<FinishReason> {
        let Token {
            text,
            finish,
            logprobs,
            ..
        } = token;
        self.generated = self.generated.saturating_add(1);
        self.logprobs.extend(logprobs);
        let scan = self.stop.push(&text);
        self.emit(scan.emit);
        if scan.stopped {
            return Some(FinishReason::Stop);
        }
        let length = (self.generated >= self.max_tokens).then_some(FinishReason::Length);
        let reason = finish.or(length)?;
        let rest = self.stop.flush();
        self.emit(rest);
        Some(reason)
    }

    /// Ends the sequence with `outcome` (releasing its slot), or keeps it in `batch`.
    fn settle<G: Generator<Sequence = S>>(
        self,
        outcome: Option<FinishReason>,
        generator: &mut G,
        stats: &SchedulerStats,
        batch: &mut Vec<Running<S>>,
    ) {
        match outcome {
            Some(reason) => self.end(reason, generator, stats),
            None => batch.push(self),
        }
    }

    /// Releases the slot, then tells the client: once it knows, the slot is free (and
    /// `/metrics` says so).
    fn end<G: Generator<Sequence = S>>(
        self,
        reason: FinishReason,
        generator: &mut G,
        stats: &SchedulerStats,
    ) {
        let Running {
            sequence,
            events,
            generated,
            ..
        } = self;
        release(generator, stats, sequence);
        let _ = events.send(GenerationEvent::Finished {
            reason,
            completion_tokens: generated,
        });
    }

    fn emit(&mut self, text: String) {
        if !text.is_empty() {
            // A closed channel means the client left; the loop notices and drops the sequence.
            let _ = self.events.send(GenerationEvent::Text {
                text,
                tokens: self.generated,
                logprobs: std::mem::take(&mut self.logprobs),
            });
        }
    }
}

/// Frees a sequence's KV slot and counts it free.
fn release<G: Generator>(generator: &mut G, stats: &SchedulerStats, sequence: G::Sequence) {
    generator.release(sequence);
    stats.kv_slots_held.fetch_sub(1, Ordering::Relaxed);
}

/// Runs until every [`super::Scheduler`] handle is dropped and the batch has drained, or
/// until [`super::Scheduler::stop`].
pub(crate) fn run<G: Generator>(
    mut generator: G,
    jobs: &Receiver<Command>,
    stats: &SchedulerStats,
    stopping: &AtomicBool,
) {
    let max_batch = generator.max_batch().max(1);
    let mut batch: Vec<Running<G::Sequence>> = Vec::with_capacity(max_batch);
    let mut queue_open = true;
    // A request of several choices that waits, first in line, for a slot per choice.
    let mut held: Option<Job> = None;
    // Long prompts prefilled a chunk per turn, in order; only the first has begun.
    let chunk = generator.prefill_chunk().filter(|&c| c > 0);
    let mut prefilling: VecDeque<Prefilling> = VecDeque::new();
    let mut next_key = 0u64;
    loop {
        if stopping.load(Ordering::SeqCst) {
            cancel_all(
                &mut generator,
                &mut batch,
                held.take(),
                &mut prefilling,
                jobs,
                stats,
            );
            return;
        }
        // This turn's work for `iteration_tokens`: prompt tokens prefilled, then decode rows.
        let mut prefilled = 0u64;
        // Admit: collect this turn's jobs, a slot per choice, then prefill them together.
        let mut admitted: Vec<Job> = Vec::new();
        let mut reserved = batch.len() + prefilling.len();
        while reserved < max_batch && !stopping.load(Ordering::SeqCst) {
            let job = match held.take() {
                Some(job) => job,
                None if !queue_open => break,
                None => {
                    let next = if reserved == 0 {
                        jobs.recv().map_err(|_| TryRecvError::Disconnected)
                    } else {
                        jobs.try_recv()
                    };
                    let command = match next {
                        Ok(command) => command,
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            queue_open = false;
                            break;
                        }
                    };
                    let Command::Run(job) = command else {
                        continue;
                    };
                    stats.waiting.fetch_sub(1, Ordering::SeqCst);
                    job
                }
            };
            if job.events.iter().all(UnboundedSender::is_closed) {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let choices = job.events.len();
            if choices > max_batch {
                tracing::error!(choices, max_batch, "more choices than KV slots");
                job.finish_all(FinishReason::Error);
                continue;
            }
            if reserved + choices > max_batch {
                held = Some(job);
                break;
            }
            reserved += choices;
            stats
                .max_tokens
                .observe_tokens(u64::from(job.request.params.max_tokens()));
            for events in &job.events {
                let _ = events.send(GenerationEvent::Started {
                    queued_for: job.request.enqueued_at.elapsed(),
                });
            }
            let long = chunk.is_some_and(|c| job.request.prompt_tokens.len() > c);
            if long && choices == 1 {
                next_key += 1;
                prefilling.push_back(Prefilling {
                    key: next_key,
                    job,
                    done: 0,
                });
            } else {
                admitted.push(job);
            }
        }
        if !admitted.is_empty() {
            let requests: Vec<&GenerationRequest> = admitted.iter().map(|j| &j.request).collect();
            let results = generator.start_batch(&requests);
            if results.len() != admitted.len() {
                tracing::error!(got = results.len(), want = admitted.len(), "start_batch");
            }
            let mut results = results.into_iter();
            for job in admitted {
                let choices = job.events.len();
                match results.next() {
                    Some(Ok(started)) if started.len() == choices => {
                        prefilled += job.request.prompt_tokens.len() as u64;
                        for ((sequence, first), events) in started.into_iter().zip(job.events) {
                            stats.kv_slots_held.fetch_add(1, Ordering::Relaxed);
                            let mut running = Running::new(sequence, &job.request, events);
                            let outcome = running.accept(first);
                            running.settle(outcome, &mut generator, stats, &mut batch);
                        }
                    }
                    Some(Ok(started)) => {
                        tracing::error!(got = started.len(), choices, "wrong number of choices");
                        for (sequence, _) in started {
                            generator.release(sequence);
                        }
                        job.finish_all(FinishReason::Error);
                    }
                    Some(Err(err)) => {
                        tracing::error!(error = %err, "prefill failed");
                        job.finish_all(FinishReason::Error);
                    }
                    None => job.finish_all(FinishReason::Error),
                }
            }
        }
        if let Some(chunk) = chunk {
            prefilled += prefill_next(&mut generator, &mut prefilling, chunk, stats, &mut batch);
        }
        // Drop sequences whose client has gone.
        let (gone, kept): (Vec<_>, Vec<_>) = batch.drain(..).partition(|r| r.events.is_closed());
        batch = kept;
        stats
            .dropped
            .fetch_add(gone.len() as u64, Ordering::Relaxed);
        for running in gone {
            release(&mut generator, stats, running.sequence);
        }
        stats.running.store(batch.len(), Ordering::SeqCst);
        if batch.is_empty() {
            if prefilled > 0 {
                stats.iteration_tokens.observe_tokens(prefilled);
            }
            let waiting = held.is_some() || !prefilling.is_empty();
            if queue_open || waiting || stopping.load(Ordering::SeqCst) {
                continue;
            }
            return;
        }
        // One batched step.
        let mut sequences: Vec<&mut G::Sequence> =
            batch.iter_mut().map(|r| &mut r.sequence).collect();
        let stepped = generator.step(&mut sequences);
        // Counted before any sequence of the step is answered.
        stats
            .iteration_tokens
            .observe_tokens(prefilled + batch.len() as u64);
        match stepped {
            Ok(tokens) if tokens.len() == batch.len() => {
                let stepped = std::mem::replace(&mut batch, Vec::with_capacity(max_batch));
                for (mut running, token) in stepped.into_iter().zip(tokens) {
                    let outcome = running.accept(token);
                    running.settle(outcome, &mut generator, stats, &mut batch);
                }
            }
            Ok(tokens) => {
                tracing::error!(
                    got = tokens.len(),
                    want = batch.len(),
                    "engine returned the wrong number of tokens"
                );
                fail_all(&mut generator, stats, &mut batch);
            }
            Err(err) => {
                tracing::error!(error = %err, "decode step failed");
                fail_all(&mut generator, stats, &mut batch);
            }
        }
        stats.running.store(batch.len(), Ordering::SeqCst);
    }
}

/// A long prompt admitted to be prefilled a chunk per turn.
struct Prefilling {
    /// The generator's name for its partial prefill.
    key: u64,
    job: Job,
    /// Prompt positions prefilled so far.
    done: usize,
}

/// Prefills the next `chunk` positions of the first long prompt; once it is in, its
/// sequence joins `batch`. Returns the positions prefilled.
fn prefill_next<G: Generator>(
    generator: &mut G,
    prefilling: &mut VecDeque<Prefilling>,
    chunk: usize,
    stats: &SchedulerStats,
    batch: &mut Vec<Running<G::Sequence>>,
) -> u64 {
    while let Some(front) = prefilling.front() {
        if front.job.events.iter().all(UnboundedSender::is_closed) {
            if front.done > 0 {
                generator.abandon_prefill(front.key);
                stats.kv_slots_held.fetch_sub(1, Ordering::Relaxed);
            }
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            prefilling.pop_front();
            continue;
        }
        let step = chunk.min(front.job.request.prompt_tokens.len() - front.done);
        // A partial prefill holds its slot from its first chunk on.
        let began = front.done > 0;
        return match generator.prefill_some(front.key, &front.job.request, chunk) {
            Ok(None) => {
                if !began {
                    stats.kv_slots_held.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(front) = prefilling.front_mut() {
                    front.done += step;
                }
                step as u64
            }
            Ok(Some((sequence, first))) => {
                let Some(long) = prefilling.pop_front() else {
                    return 0;
                };
                if !began {
                    stats.kv_slots_held.fetch_add(1, Ordering::Relaxed);
                }
                let Some(events) = long.job.events.into_iter().next() else {
                    release(generator, stats, sequence);
                    return 0;
                };
                let mut running = Running::new(sequence, &long.job.request, events);
                let outcome = running.accept(first);
                running.settle(outcome, generator, stats, batch);
                step as u64
            }
            Err(err) => {
                tracing::error!(error = %err, "chunked prefill failed");
                // The generator freed the slot.
                if began {
                    stats.kv_slots_held.fetch_sub(1, Ordering::Relaxed);
                }
                if let Some(long) = prefilling.pop_front() {
                    long.job.finish_all(FinishReason::Error);
                }
                0
            }
        };
    }
    0
}

/// Shutdown: finishes every running sequence `Cancelled` with what it generated so far,
/// and every queued request `Cancelled` with nothing, so each is sworn and answered.
fn cancel_all<G: Generator>(
    generator: &mut G,
    batch: &mut Vec<Running<G::Sequence>>,
    held: Option<Job>,
    prefilling: &mut VecDeque<Prefilling>,
    jobs: &Receiver<Command>,
    stats: &SchedulerStats,
) {
    if let Some(job) = held {
        job.finish_all(FinishReason::Cancelled);
    }
    for long in prefilling.drain(..) {
        if long.done > 0 {
            generator.abandon_prefill(long.key);
            stats.kv_slots_held.fetch_sub(1, Ordering::Relaxed);
        }
        long.job.finish_all(FinishReason::Cancelled);
    }
    for mut running in batch.drain(..) {
        // Text held back by a possible stop string was generated: deliver it.
        let rest = running.stop.flush();
        running.emit(rest);
        running.end(FinishReason::Cancelled, generator, stats);
    }
    stats.running.store(0, Ordering::SeqCst);
    while let Ok(command) = jobs.try_recv() {
        if let Command::Run(job) = command {
            stats.waiting.fetch_sub(1, Ordering::SeqCst);
            job.finish_all(FinishReason::Cancelled);
        }
    }
}

fn fail_all<G: Generator>(
    generator: &mut G,
    stats: &SchedulerStats,
    batch: &mut Vec<Running<G::Sequence>>,
) {
    for running in batch.drain(..) {
        running.end(FinishReason::Error, generator, stats);
    }
}

#[cfg(test)]
mod tests;
