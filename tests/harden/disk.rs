//! The logs on a tiny tmpfs.
