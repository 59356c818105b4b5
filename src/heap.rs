//! The C library's heap, in the daemon's three long-lived processes (keeper, controller, log keeper).
//!
//! They are small most of the time, and now and then handle a frame of megabytes (a thousand apps defined
//! at once, their records listed). Two settings keep that from staying resident: a fixed mapping threshold,
//! so that blocks of [`MMAP_THRESHOLD`] and more get mappings of their own, given back when freed (the
//! library's default raises the threshold after the first such free, and those blocks then fragment the
//! heap for good); and a trim after a large frame, since the many small blocks a frame is decoded into
//! are freed in the middle of the heap, which the library keeps unless asked.

use std::sync::atomic::{AtomicBool, Ordering};

/// Blocks at least this large are mapped on their own.
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;
/// A frame at least this long leaves enough freed memory behind to be worth giving back.
const LARGE_FRAME: usize = 256 * 1024;

static LARGE_SEEN: AtomicBool = AtomicBool::new(false);

/// Fixes the mapping threshold; called once, first thing, by each long-lived process.
pub fn tune() {
    // SAFETY: mallopt with integer arguments.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
}

/// Gives the heap's free memory back to the system.
pub fn give_back() {
    // SAFETY: malloc_trim only releases free memory of the C library's heap.
    unsafe { libc::malloc_trim(0) };
}

/// Notes a frame of `len` bytes; a large one is given back by the next [`give_back_if_large`].
pub fn note_frame(len: usize) {
    if len >= LARGE_FRAME {
        LARGE_SEEN.store(true, Ordering::Relaxed);
    }
}

/// Gives the heap back if a large frame was noted since the last time (call it once the frame and what it
/// was decoded into are dropped).
pub fn give_back_if_large() {
    if LARGE_SEEN.swap(false, Ordering::Relaxed) {
        give_back();
    }
}
