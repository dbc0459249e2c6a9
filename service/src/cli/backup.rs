//! `sworn backup`: a consistent, checked copy of a stopped server's data directory.
//!
//! sled 0.34 has no online snapshot, and a file copy of a sled directory that a server is
//! writing can be torn. So the copy is taken from a stopped server, and the command makes
//! sure of it: it holds sled's own lock on the database (the lock `sworn serve` holds
//! while it runs) for the whole copy, so it refuses while a server runs and no server can
//! start on the directory meanwhile. It copies every file of the data directory (sled's
//! files, the high-water record beside them, and the log key and API-keys file where they
//! are kept there) into `OUT.partial`, syncs each, then opens the copy as the ledger it
//! must be, which runs every check a start runs (identity, recovery, the high-water
//! record), and only then renames it to `OUT`. Nothing is signed or sealed in the copy.
//!
//! Restoring is the same command the other way round: `sworn backup --data-dir BACKUP
//! --out DATA_DIR` (docs/OPERATIONS.md). Whether the restored log may serve is decided at
//! `sworn serve`'s start, against the chain.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sworn_ledger::anchor::AnchorStore;
use sworn_ledger::keys::LogKey;
use sworn_ledger::store::{Ledger, LedgerConfig};
use sworn_service::lifecycle::LEDGER_DIR;

/// `sworn backup`.
#[derive(Debug, clap::Args)]
pub(crate) struct BackupArgs {
    /// The data directory to copy, of a stopped `sworn serve` (or a backup, to restore it).
    #[arg(long, env = "SWORN_DATA_DIR")]
    data_dir: PathBuf,
    /// Where to write the copy: a path that does not exist yet.
    #[arg(long)]
    out: PathBuf,
    /// The log's origin, to check the copy with (as given to `sworn serve`).
    #[arg(long, env = "SWORN_ORIGIN", default_value = "sworn.local/dev")]
    origin: String,
    /// The log key, to check the copy with [default: DATA_DIR/log.key].
    #[arg(long, env = "SWORN_LOG_KEY")]
    log_key: Option<PathBuf>,
}

/// Copies, checks and renames into place; returns the line to print.
pub(crate) fn run(args: &BackupArgs) -> Result<String> {
    let ledger_dir = args.data_dir.join(LEDGER_DIR);
    let sled_db = ledger_dir.join("db");
    if !sled_db.is_file() {
        bail!(
            "{} holds no ledger ({} is missing)",
            args.data_dir.display(),
            sled_db.display()
        );
    }
    if args.out.exists() {
        bail!(
            "{} exists: a backup goes to a new path, it never overwrites",
            args.out.display()
        );
    }
    let partial = partial_path(&args.out)?;
    if partial.exists() {
        bail!(
            "{} exists (an interrupted backup?): remove it first",
            partial.display()
        );
    }
    refuse_inside(&args.data_dir, &args.out)?;
    let lock = lock_sled(&sled_db)?;

    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    let copied = copy_tree(&args.data_dir, &partial)
        .and_then(|()| check_copy(args, &partial.join(LEDGER_DIR)));
    drop(lock);
    let summary = match copied {
        Ok(summary) => summary,
        Err(e) => {
            let removed = std::fs::remove_dir_all(&partial);
            let fate = match removed {
                Ok(()) => "the partial copy was removed".to_string(),
                Err(r) => format!("remove the partial copy {} ({r})", partial.display()),
            };
            return Err(e.context(format!(
                "backing up {} failed; {fate}",
                args.data_dir.display()
            )));
        }
    };
    std::fs::rename(&partial, &args.out)
        .with_context(|| format!("renaming {} to {}", partial.display(), args.out.display()))?;
    sync_dir(parent_of(&args.out))?;
    Ok(format!(
        "backed up {} to {}: {summary}",
        args.data_dir.display(),
        args.out.display()
    ))
}

/// `OUT.partial`, beside `OUT`.
fn partial_path(out: &Path) -> Result<PathBuf> {
    let mut name = out
        .file_name()
        .with_context(|| format!("--out {} names no directory", out.display()))?
        .to_os_string();
    name.push(".partial");
    Ok(out.with_file_name(name))
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Refuses an `out` inside `data_dir`: the copy would copy itself.
fn refuse_inside(data_dir: &Path, out: &Path) -> Result<()> {
    let data = std::fs::canonicalize(data_dir)
        .with_context(|| format!("resolving {}", data_dir.display()))?;
    let parent = std::fs::canonicalize(parent_of(out))
        .with_context(|| format!("resolving the parent of {}", out.display()))?;
    if parent.starts_with(&data) {
        bail!(
            "--out {} lies inside --data-dir {}",
            out.display(),
            data_dir.display()
        );
    }
    Ok(())
}

/// Takes sled's exclusive lock on its database file, the one a running `sworn serve`
/// holds, and keeps it while the returned file is open.
fn lock_sled(db: &Path) -> Result<File> {
    let file = File::open(db).with_context(|| format!("opening {}", db.display()))?;
    // SAFETY: flock on a file descriptor this function owns; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            bail!(
                "{} is in use (a `sworn serve` holds its lock): stop the server first; a copy \
                 of a sled directory that is being written can be torn",
                parent_of(db).display()
            );
        }
        return Err(err).with_context(|| format!("locking {}", db.display()));
    }
    Ok(file)
}

/// Copies the directory `from` into the existing directory `to`: every file (mode kept,
/// synced) and directory; anything else (a symbolic link, a socket) is refused.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let mode = std::fs::metadata(from)
        .with_context(|| format!("reading {}", from.display()))?
        .permissions()
        .mode();
    for entry in std::fs::read_dir(from).with_context(|| format!("listing {}", from.display()))? {
        let entry = entry.with_context(|| format!("listing {}", from.display()))?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry
            .file_type()
            .with_context(|| format!("reading {}", source.display()))?;
        if kind.is_dir() {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&target)
                .with_context(|| format!("creating {}", target.display()))?;
            copy_tree(&source, &target)?;
        } else if kind.is_file() {
            std::fs::copy(&source, &target)
                .with_context(|| format!("copying {} to {}", source.display(), target.display()))?;
            File::open(&target)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("syncing {}", target.display()))?;
        } else {
            bail!(
                "{} is neither a file nor a directory: copy the data directory by hand",
                source.display()
            );
        }
    }
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", to.display()))?;
    sync_dir(to)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// Opens the copied ledger as `sworn serve` would (without a sealer, so nothing is
/// signed) and describes what it holds.
fn check_copy(args: &BackupArgs, ledger_dir: &Path) -> Result<String> {
    let key_path = args
        .log_key
        .clone()
        .unwrap_or_else(|| args.data_dir.join("log.key"));
    let key = LogKey::load(&key_path).with_context(|| {
        format!(
            "loading the log key {} to check the copy (--log-key names another)",
            key_path.display()
        )
    })?;
    let mut config = LedgerConfig::new(ledger_dir, &args.origin, key);
    config.sealer = false;
    let ledger = Ledger::open(config).with_context(|| {
        format!(
            "the copy does not open as the ledger of {} (is --origin right?)",
            args.origin
        )
    })?;
    let checkpoint = match ledger.latest_checkpoint()? {
        Some(signed) => format!(
            "newest checkpoint size {} root {}",
            signed.checkpoint.size, signed.checkpoint.root
        ),
        None => "no checkpoint".to_string(),
    };
    let anchor = match ledger.last_record()? {
        Some(record) => format!(
            "newest anchor record seq {} (size {}, {})",
            record.seq,
            record.tree_size,
            if record.state.is_finalized() {
                "finalized"
            } else {
                "not final"
            }
        ),
        None => "no anchor record".to_string(),
    };
    Ok(format!(
        "log {}, {} entries, {checkpoint}, {anchor}",
        ledger.origin(),
        ledger.size()
    ))
}
