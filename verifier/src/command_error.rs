//! [`CommandError`]: a problem with a `sworn-verify` command itself, as opposed to a
//! finding about what it checked (those are in the [`Report`](crate::report::Report)).
//! Its own module so that `commands` and the checks it runs (`receipt_check`) both use it
//! without depending on each other.

/// A problem with the command itself: bad flags, unreadable files, unreachable services.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The flags do not make sense together.
    #[error("usage: {0}")]
    Usage(String),
    /// A file, the server or the chain could not be read.
    #[error("{0}")]
    Io(String),
}
