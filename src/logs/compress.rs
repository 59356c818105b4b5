//! Compressing rotated log files (`log_compress = true`), off the keeper's loop.
//!
//! After a rotation the keeper queues a job for the log; one thread per keeper process takes the jobs in
//! turn and gzips every rotated file numbered 2 or more that is not compressed yet (`app-out.log.2` ->
//! `app-out.log.2.gz`). `.1` stays plain, as logrotate's `delaycompress`: a reader following the log
//! finds the file it was reading at `.1` after a rotation and finishes it there.
//!
//! The compressed copy is written under a hidden temporary name (no reader or rotation looks at it); the
//! rename into place and the removal of the plain file happen under the rotation lock (`flock` on the
//! current file, see [`super::output`]), at whatever number the file has by then (a rotation may have
//! moved it meanwhile). A reader that sees both `.N` and `.N.gz` for a moment reads the plain one.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::mpsc::{Sender, channel};
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;

use flate2::Compression;
use flate2::write::GzEncoder;

use super::{rotated_in, rotated_name};
use crate::secure_fs::{self, Dir};

/// One log whose rotated files may need compressing.
pub struct Job {
    pub dir: Dir,
    /// The log's file name in `dir`.
    pub name: OsString,
}

struct Worker {
    jobs: Sender<Job>,
    thread: JoinHandle<()>,
}

static WORKER: OnceLock<Mutex<Option<Worker>>> = OnceLock::new();

/// Queues a job, starting the compressing thread if needed.
pub fn queue(job: Job) {
    let slot = WORKER.get_or_init(|| Mutex::new(None));
    let Ok(mut worker) = slot.lock() else {
        return;
    };
    if worker.is_none() {
        let (jobs, received) = channel::<Job>();
        // The thread starts with every signal blocked (it inherits the mask it is created with), so that
        // SIGTERM and SIGUSR1 reach the keeper's loop and interrupt its poll.
        let all = nix::sys::signal::SigSet::all();
        let mut previous = nix::sys::signal::SigSet::empty();
        let blocked = nix::sys::signal::pthread_sigmask(
            nix::sys::signal::SigmaskHow::SIG_BLOCK,
            Some(&all),
            Some(&mut previous),
        );
        let spawned = std::thread::Builder::new()
            .name("log-compress".into())
            .spawn(move || {
                for job in received {
                    compress_rotated(&job.dir, &job.name);
                }
            });
        if blocked.is_ok() {
            let _ = nix::sys::signal::pthread_sigmask(
                nix::sys::signal::SigmaskHow::SIG_SETMASK,
                Some(&previous),
                None,
            );
        }
        match spawned {
            Ok(thread) => *worker = Some(Worker { jobs, thread }),
            Err(error) => {
                tracing::warn!(%error, "cannot start the thread that compresses rotated logs");
                return;
            }
        }
    }
    if let Some(w) = worker.as_ref() {
        let _ = w.jobs.send(job);
    }
}

/// Lets the queued jobs finish (the keeper is about to exit).
pub fn finish() {
    let Some(slot) = WORKER.get() else {
        return;
    };
    let worker = slot.lock().ok().and_then(|mut w| w.take());
    if let Some(Worker { jobs, thread }) = worker {
        // The jobs queued are done, then the thread ends.
        drop(jobs);
        let _ = thread.join();
    }
}

/// Compresses every plain rotated file of a log numbered 2 or more.
pub fn compress_rotated(dir: &Dir, name: &OsStr) {
    let Ok(files) = rotated_in(dir, name) else {
        return;
    };
    for (n, file) in files {
        if n < 2 || file.as_encoded_bytes().ends_with(b".gz") {
            continue;
        }
        if let Err(error) = compress_one(dir, name, &file) {
            tracing::warn!(
                file = %dir.path().join(&file).display(),
                %error,
                "cannot compress a rotated log; it stays as it is"
            );
        }
    }
}

fn compress_one(dir: &Dir, name: &OsStr, file: &OsStr) -> Result<(), String> {
    let source = match dir.open_read(file) {
        Ok(source) => source,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e.to_string()),
    };
    let id = {
        use std::os::unix::fs::MetadataExt;
        let meta = source.metadata().map_err(|e| e.to_string())?;
        (meta.dev(), meta.ino())
    };
    let mut temp = OsString::from(".");
    temp.push(name);
    temp.push(format!(".{}.gz-tmp", std::process::id()));
    dir.remove(&temp).map_err(|e| e.to_string())?;
    let written = dir
        .create_new(&temp, 0o600)
        .map_err(|e| e.to_string())
        .and_then(|out| gzip(&source, out).map_err(|e| format!("gzip: {e}")));
    if let Err(e) = written {
        let _ = dir.remove(&temp);
        return Err(e);
    }
    // Into place under the rotation lock, at the number the file has now.
    let _lock = lock_current(dir, name);
    let now = rotated_in(dir, name)
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|(_, f)| {
            !f.as_encoded_bytes().ends_with(b".gz")
                && dir.stat(f).is_ok_and(|s| secure_fs::id(&s) == id)
        });
    let Some((n, plain)) = now else {
        // Removed meanwhile (beyond `log_keep`, or a flush).
        let _ = dir.remove(&temp);
        return Ok(());
    };
    let mut gz = rotated_name(name, n);
    gz.push(".gz");
    dir.rename(&temp, &gz).map_err(|e| e.to_string())?;
    dir.remove(&plain).map_err(|e| e.to_string())
}

fn gzip(mut source: &File, out: File) -> io::Result<()> {
    let mut encoder = GzEncoder::new(io::BufWriter::new(out), Compression::default());
    io::copy(&mut source, &mut encoder)?;
    let mut out = encoder.finish()?;
    io::Write::flush(&mut out)
}

/// Takes the rotation lock (`flock(LOCK_EX)` on the current file, once the path is seen to still name
/// the file locked); released when the returned file is dropped. `None` when there is no current file.
fn lock_current(dir: &Dir, name: &OsStr) -> Option<File> {
    for _ in 0..5 {
        let file = dir.open_read(name).ok()?;
        // SAFETY: flock on a descriptor `file` owns; released when it is closed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return None;
        }
        let locked = {
            use std::os::unix::fs::MetadataExt;
            let meta = file.metadata().ok()?;
            (meta.dev(), meta.ino())
        };
        if dir.stat(name).is_ok_and(|s| secure_fs::id(&s) == locked) {
            return Some(file);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn rotated_files_from_the_second_on_are_gzipped_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (file, text) in [
            ("a.log", "current\n"),
            ("a.log.1", "one\n"),
            ("a.log.2", "two\n"),
            ("a.log.3.gz", "already"),
            ("a.log.4", "four\n"),
        ] {
            std::fs::write(dir.path().join(file), text).expect("write");
        }
        let opened = Dir::walk(dir.path(), false).expect("walk");
        compress_rotated(&opened, OsStr::new("a.log"));
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["a.log", "a.log.1", "a.log.2.gz", "a.log.3.gz", "a.log.4.gz"]
        );
        let mut text = String::new();
        flate2::read::GzDecoder::new(File::open(dir.path().join("a.log.4.gz")).expect("open"))
            .read_to_string(&mut text)
            .expect("gunzip");
        assert_eq!(text, "four\n");
    }
}
