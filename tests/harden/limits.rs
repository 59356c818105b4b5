//! Low limits and descriptor leaks.
