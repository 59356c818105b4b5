//! Hostile peers, full disks and low limits (issue 17): the daemon refuses what it must, says why once, and
//! everything else goes on.
//!
//! - `peers`: another user on the control socket or the keeper's; root on another user's daemon; socket
//!   files someone else made.
//! - `disk`: the logs on a tiny tmpfs that fills up; a `save` on a full disk.
//! - `limits`: a daemon under a low `RLIMIT_NOFILE` or `RLIMIT_NPROC`; descriptors after 1000 starts and
//!   deletes.
//!
//! What needs root (a second user, a mount) says SKIPPED and returns when the tests do not run as root; CI
//! runs them as root, where nothing here skips.

mod disk;
mod limits;
mod peers;

use std::path::PathBuf;

/// The herdsman binary, reachable by another user (every directory above it searchable).
fn shared_binary() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_herdsman"));
    if let Some(dir) = exe.parent() {
        crate::helpers::open_path_to(dir);
    }
    exe
}
