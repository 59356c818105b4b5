//! Compact frames: a field at its default is left out of a frame, and put back by the decoder.
//!
//! The records of `list`, `jobs` and `describe` are public contracts: `list --json` prints every field,
//! `null` and `0` included. On the wire those defaults are most of the bytes (a thousand workers' records
//! are half `null`, `false` and `0`), so [`super::encode_frame`] writes in compact mode and the fields
//! that may be left out name one of the predicates below in `skip_serializing_if`: true only in compact
//! mode, so what the CLI prints for people and tools is unchanged. Each such field has a default that
//! decodes to the same value (`#[serde(default)]`, or an `Option`'s `None`).
//!
//! Serde has no per-call context, hence a thread-local: set for the duration of one encode, on the thread
//! that encodes.

use std::cell::Cell;

thread_local! {
    static COMPACT: Cell<bool> = const { Cell::new(false) };
}

/// Runs `encode` in compact mode.
pub fn compact<R>(encode: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            COMPACT.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(COMPACT.with(|c| c.replace(true)));
    encode()
}

fn compacting() -> bool {
    COMPACT.with(Cell::get)
}

/// `None`, in compact mode.
pub fn none<T>(value: &Option<T>) -> bool {
    value.is_none() && compacting()
}

/// The type's default (`0`, `false`, `0.0`, an empty string or list), in compact mode.
pub fn default<T: Default + PartialEq>(value: &T) -> bool {
    compacting() && *value == T::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_encode_in_compact_mode_leaves_defaults_out() {
        assert!(!none::<u32>(&None));
        assert!(!default(&0u32));
        compact(|| {
            assert!(none::<u32>(&None));
            assert!(!none(&Some(0u32)));
            assert!(default(&0u32) && default(&false) && default(&0.0f32));
            assert!(!default(&1u64));
            // nested: the outer mode comes back
            compact(|| ());
            assert!(default(&0u32));
        });
        assert!(!default(&0u32));
    }
}
