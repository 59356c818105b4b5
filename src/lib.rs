//! herdsman: a pre-fork cluster process supervisor.
//!
//! One binary is both the CLI and the daemon. The daemon binds each app's listening socket and starts
//! workers that inherit it (systemd socket activation), so connections go from the kernel straight to the
//! workers. See docs/architecture.md for the shape of the whole.

/// herdsman's version: the package's, or the one a build was given (`HERDSMAN_BUILD_VERSION`, for a
/// distribution's own suffix, or a second build to test `update` with).
pub const VERSION: &str = match option_env!("HERDSMAN_BUILD_VERSION") {
    Some(version) => version,
    None => env!("CARGO_PKG_VERSION"),
};

mod accepting;
pub mod cli;
pub mod client;
pub mod config;
pub mod controller;
pub mod daemon;
mod descriptors;
pub mod fleet;
#[doc(hidden)]
pub mod fuzzing;
mod heap;
pub mod home;
pub mod human;
pub mod logs;
pub mod monit;
pub mod protocol;
mod refusal;
pub mod schedule;
pub mod secure_fs;
pub mod systemd;
