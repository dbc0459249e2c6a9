//! How many connections the server holds and for how long: the limits operators set
//! ([`ConnectionLimits`]), the table of live connections that enforces the cap, and fitting
//! the cap to the process's file-descriptor limit.
//!
//! Past `max_connections`, a new connection first makes room by closing the live connection
//! that has been idle longest with no request in flight (an idle keep-alive connection, or one
//! still sending its head); only when every connection is busy with a request is the newcomer
//! refused with 503 `too_many_connections`. Stalled clients therefore cannot crowd out
//! well-behaved ones, and the process never runs out of file descriptors.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::time::Instant;

/// Default for [`ConnectionLimits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Default for [`ConnectionLimits::header_read_timeout`].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`ConnectionLimits::body_read_timeout`].
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Default for [`ConnectionLimits::keep_alive_timeout`].
pub const DEFAULT_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most header fields read in a request (hyper's own default, stated here so that the 431
/// answer can name it).
pub const MAX_HEADERS: usize = 100;

/// Sockets beyond `max_connections` held at once, each for at most [`REFUSAL_HOLD`], to send
/// the 503 refusal; past these a connection is closed without an answer.
pub(crate) const REFUSAL_SLOTS: usize = 64;
/// Longest a refused connection is held (to write the 503 and let the client read it).
pub(crate) const REFUSAL_HOLD: Duration = Duration::from_secs(1);
/// How long a new connection waits for an evicted idle one to release its place.
pub(crate) const EVICTION_WAIT: Duration = Duration::from_millis(100);
/// File descriptors kept for everything but connections: the listener, the ledger, the
/// model, logs, the runtime.
const FD_RESERVE: libc::rlim_t = 128;

/// Bounds on each connection. Every timeout ends the connection, never a generation: the
/// answer to a request whose body was read in time is streamed for as long as it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections served at once (TLS handshakes included).
    pub max_connections: usize,
    /// A request head must be complete within this once the server waits for it (on a
    /// keep-alive connection, from the end of the previous answer).
    pub header_read_timeout: Duration,
    /// A request body must be complete within this from the end of its head.
    pub body_read_timeout: Duration,
    /// A connection with no request in flight is closed after this long idle.
    pub keep_alive_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            keep_alive_timeout: DEFAULT_KEEP_ALIVE_TIMEOUT,
        }
    }
}

/// Raises the soft file-descriptor limit (up to the hard one) so that `max_connections`
/// connections, the refusal slots and the server's own files fit; returns the number of
/// connections that fit, `max_connections` unless even the hard limit is too low.
pub fn fit_to_fd_limit(max_connections: usize) -> usize {
    let overhead = REFUSAL_SLOTS as libc::rlim_t + FD_RESERVE;
    let needed = (max_connections as libc::rlim_t).saturating_add(overhead);
    let Some(mut limit) = nofile_limit() else {
        return max_connections;
    };
    if limit.rlim_cur < needed {
        let raised = libc::rlimit {
            rlim_cur: needed.min(limit.rlim_max),
            rlim_max: limit.rlim_max,
        };
        if set_nofile_limit(&raised) {
            limit = raised;
        }
    }
    if limit.rlim_cur >= needed {
        return max_connections;
    }
    let fitted = usize::try_from(limit.rlim_cur.saturating_sub(overhead))
        .unwrap_or(max_connections)
        .clamp(1, max_connections);
    tracing::warn!(
        requested = max_connections,
        fitted,
        fd_limit = limit.rlim_cur,
        "the file-descriptor limit is too low for --max-connections; serving fewer connections (raise `ulimit -n`)"
    );
    fitted
}

fn nofile_limit() -> Option<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through a valid, exclusive pointer.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0).then_some(limit)
}

fn set_nofile_limit(limit: &libc::rlimit) -> bool {
    // SAFETY: setrlimit reads one `rlimit` through a valid pointer.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, limit) == 0 }
}

/// Locks `mutex` even if poisoned: every lock here guards plain fields, a map only inserted
/// into and removed from, or a value replaced whole, which a panic elsewhere cannot leave torn.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What one connection is doing, shared by its task, its IO wrapper, its service and the
/// connection table.
#[derive(Debug)]
pub(crate) struct ConnShared {
    id: u64,
    activity: Mutex<Activity>,
    /// The socket refused the last write and no flush has completed since: hyper still
    /// holds answer bytes, so the connection must not be dropped as idle.
    write_blocked: AtomicBool,
    /// Request bytes arrived since the last request began or its answer ended: a client
    /// is in the middle of sending a head.
    head_bytes: AtomicBool,
    /// An answer went out before its request was read (or instead of parsing it): drain
    /// what the client still sends before closing, so that it reads the answer, not a reset.
    linger: AtomicBool,
    /// The table asked this connection to make room.
    evict: Notify,
    evicting: AtomicBool,
}

#[derive(Debug)]
struct Activity {
    in_flight: usize,
    idle_since: Instant,
}

impl ConnShared {
    pub(crate) fn new(id: u64) -> ConnShared {
        ConnShared {
            id,
            activity: Mutex::new(Activity {
                in_flight: 0,
                idle_since: Instant::now(),
            }),
            write_blocked: AtomicBool::new(false),
            head_bytes: AtomicBool::new(false),
            linger: AtomicBool::new(false),
            evict: Notify::new(),
            evicting: AtomicBool::new(false),
        }
    }

    /// A request head was parsed and handed to the routes.
    pub(crate) fn request_started(&self) {
        lock(&self.activity).in_flight += 1;
        self.head_bytes.store(false, Ordering::Relaxed);
    }

    /// A request's answer was sent (or abandoned).
    pub(crate) fn request_ended(&self) {
        let mut activity = lock(&self.activity);
        activity.in_flight = activity.in_flight.saturating_sub(1);
        if activity.in_flight == 0 {
            activity.idle_since = Instant::now();
        }
        drop(activity);
        self.head_bytes.store(false, Ordering::Relaxed);
    }

    /// How long the connection has had no request in flight; `None` while it has one.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        self.idle_since().map(|since| since.elapsed())
    }

    /// Since when the connection has had no request in flight; `None` while it has one.
    /// Comparing these instants (not `idle_for`, whose readings are taken one after the
    /// other) ranks connections consistently.
    fn idle_since(&self) -> Option<Instant> {
        let activity = lock(&self.activity);
        (activity.in_flight == 0).then_some(activity.idle_since)
    }

    /// Whether dropping the connection now loses nothing: no request in flight and no
    /// answer bytes waiting for the socket.
    pub(crate) fn evictable(&self) -> bool {
        self.idle_for().is_some() && !self.write_blocked.load(Ordering::Relaxed)
    }

    pub(crate) fn set_write_blocked(&self, blocked: bool) {
        self.write_blocked.store(blocked, Ordering::Relaxed);
    }

    pub(crate) fn saw_request_bytes(&self) {
        self.head_bytes.store(true, Ordering::Relaxed);
    }

    pub(crate) fn mid_head(&self) -> bool {
        self.head_bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn set_linger(&self) {
        self.linger.store(true, Ordering::Relaxed);
    }

    pub(crate) fn should_linger(&self) -> bool {
        self.linger.load(Ordering::Relaxed)
    }

    /// Resolves when the table asks this connection to make room.
    pub(crate) async fn eviction_requested(&self) {
        self.evict.notified().await;
    }

    /// The eviction request came too late: the connection got busy meanwhile.
    pub(crate) fn eviction_declined(&self) {
        self.evicting.store(false, Ordering::Relaxed);
    }
}

/// The live connections: who may be asked to make room.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    next_id: AtomicU64,
    live: Mutex<HashMap<u64, Arc<ConnShared>>>,
}

impl Registry {
    /// Enters a connection holding `permit`; it leaves the table when the returned place is
    /// dropped, and then releases the permit.
    pub(crate) fn admit(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Place {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(ConnShared::new(id));
        lock(&self.live).insert(id, shared.clone());
        Place {
            registry: self.clone(),
            shared,
            _permit: permit,
        }
    }

    /// Asks the connection idle longest with nothing in flight to close. Returns whether
    /// one was asked.
    pub(crate) fn evict_one(&self) -> bool {
        let Some((_, victim)) = lock(&self.live)
            .values()
            .filter(|c| {
                !c.evicting.load(Ordering::Relaxed) && !c.write_blocked.load(Ordering::Relaxed)
            })
            .filter_map(|c| c.idle_since().map(|since| (since, c.clone())))
            .min_by_key(|(since, _)| *since)
        else {
            return false;
        };
        victim.evicting.store(true, Ordering::Relaxed);
        victim.evict.notify_one();
        true
    }
}

/// A connection's place in the table (and its permit).
#[derive(Debug)]
pub(crate) struct Place {
    registry: Arc<Registry>,
    shared: Arc<ConnShared>,
    _permit: OwnedSemaphorePermit,
}

impl Place {
    pub(crate) fn shared(&self) -> &Arc<ConnShared> {
        &self.shared
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        lock(&self.registry.live).remove(&self.shared.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::Semaphore;

    #[tokio::test]
    async fn eviction_picks_the_longest_idle_connection_with_nothing_in_flight() {
        let registry = Arc::new(Registry::default());
        let permits = Arc::new(Semaphore::new(3));
        let busy = registry.admit(permits.clone().try_acquire_owned().unwrap());
        busy.shared().request_started();
        let older = registry.admit(permits.clone().try_acquire_owned().unwrap());
        // Two idle times read in one clock tick would tie, and the table's order would
        // decide; let the clock move past the older connection's start first.
        let admitted = Instant::now();
        while Instant::now() == admitted {
            std::hint::spin_loop();
        }
        let newer = registry.admit(permits.clone().try_acquire_owned().unwrap());
        newer.shared().request_started();
        newer.shared().request_ended();
        assert!(registry.evict_one());
        assert!(older.shared().evicting.load(Ordering::Relaxed));
        assert!(!newer.shared().evicting.load(Ordering::Relaxed));
        // The busy one is never asked; the newer idle one is next.
        assert!(registry.evict_one());
        assert!(newer.shared().evicting.load(Ordering::Relaxed));
        assert!(!registry.evict_one());
        assert!(!busy.shared().evicting.load(Ordering::Relaxed));
        drop((busy, older, newer));
        assert_eq!(permits.available_permits(), 3);
        assert!(lock(&registry.live).is_empty());
    }

    #[test]
    fn the_fitted_cap_is_never_above_the_request_nor_zero() {
        let fitted = fit_to_fd_limit(64);
        assert!((1..=64).contains(&fitted));
    }
}
