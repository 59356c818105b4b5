//! The framing of the control protocol: one JSON value per line, at most [`MAX_FRAME`] bytes, a longer
//! line refused before it is buffered further; frames are written in compact mode ([`super::wire`]).

use std::io::{self, BufRead, Write};

use serde::{Deserialize, Serialize};

use super::wire;

/// The largest frame either side accepts (a start request carries the caller's environment).
pub const MAX_FRAME: usize = 4 << 20;

/// How much a reader of answers asks the socket for at once: an answer of a thousand records is hundreds
/// of kilobytes.
pub const READ_CHUNK: usize = 64 * 1024;

/// Errors reading or writing frames.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
    #[error("frame larger than {MAX_FRAME} bytes")]
    TooLarge,
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("connection closed")]
    Closed,
    #[error("undecodable frame: {0}")]
    Decode(#[from] serde_json::Error),
}

/// Moves the next part of a line from a reader's buffer into `line`: how many bytes to consume, and whether
/// the line is complete. An empty buffer is the end of the stream: clean between lines, truncated within one.
fn take_chunk(buffer: &[u8], line: &mut Vec<u8>) -> Result<(usize, bool), FrameError> {
    if buffer.is_empty() {
        return Err(if line.is_empty() {
            FrameError::Closed
        } else {
            FrameError::Truncated
        });
    }
    let (chunk, done) = match buffer.iter().position(|&b| b == b'\n') {
        Some(end) => (&buffer[..end], true),
        None => (buffer, false),
    };
    if line.len() + chunk.len() > MAX_FRAME {
        return Err(FrameError::TooLarge);
    }
    line.extend_from_slice(chunk);
    Ok((chunk.len() + usize::from(done), done))
}

/// Maps the clean end of a stream to `None`.
fn line_or_end(result: Result<Vec<u8>, FrameError>) -> Result<Option<Vec<u8>>, FrameError> {
    match result {
        Ok(line) => Ok(Some(line)),
        Err(FrameError::Closed) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads one newline-terminated line of at most [`MAX_FRAME`] bytes, without the newline.
/// `Ok(None)` is a clean end of stream.
pub fn read_line(reader: &mut impl BufRead) -> Result<Option<Vec<u8>>, FrameError> {
    let mut line = Vec::new();
    line_or_end(loop {
        match take_chunk(reader.fill_buf()?, &mut line) {
            Ok((used, done)) => {
                reader.consume(used);
                if done {
                    break Ok(line);
                }
            }
            Err(e) => break Err(e),
        }
    })
}

/// Reads one frame and decodes it.
pub fn read_frame<T: for<'de> Deserialize<'de>>(
    reader: &mut impl BufRead,
) -> Result<Option<T>, FrameError> {
    match read_line(reader)? {
        Some(line) => Ok(Some(serde_json::from_slice(&line)?)),
        None => Ok(None),
    }
}

/// Encodes one frame, newline included, in compact mode (see [`wire`]).
pub fn encode_frame<T: Serialize>(value: &T) -> Result<Vec<u8>, FrameError> {
    let mut bytes = wire::compact(|| serde_json::to_vec(value))?;
    bytes.push(b'\n');
    if bytes.len() > MAX_FRAME {
        return Err(FrameError::TooLarge);
    }
    Ok(bytes)
}

/// Encodes and writes one frame.
pub fn write_frame<T: Serialize>(writer: &mut impl Write, value: &T) -> Result<(), FrameError> {
    writer.write_all(&encode_frame(value)?)?;
    writer.flush()?;
    Ok(())
}

/// Reads one line (as [`read_line`]) from an async reader.
pub async fn read_line_async(
    reader: &mut (impl tokio::io::AsyncBufRead + Unpin),
) -> Result<Option<Vec<u8>>, FrameError> {
    use tokio::io::AsyncBufReadExt;
    let mut line = Vec::new();
    line_or_end(loop {
        match take_chunk(reader.fill_buf().await?, &mut line) {
            Ok((used, done)) => {
                reader.consume(used);
                if done {
                    break Ok(line);
                }
            }
            Err(e) => break Err(e),
        }
    })
}

/// Decodes a line read by [`read_line_async`].
pub fn decode<T: for<'de> Deserialize<'de>>(line: &[u8]) -> Result<T, FrameError> {
    Ok(serde_json::from_slice(line)?)
}
