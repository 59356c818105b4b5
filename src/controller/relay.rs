//! One CLI connection: greet it, read its requests, check each one decodes, and relay it to the keeper on
//! a connection of its own, passing every answer back (progress frames, then the final one; a
//! subscription's snapshots until either side closes).
//!
//! A connection that waits more than [`IDLE_TIMEOUT`] for its next request is closed. A request being
//! answered has no deadline here (a reload or a stop may take long), nor has a subscription. If the keeper
//! closes a relayed request's connection before its final answer, the CLI gets an error saying so.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tracing::debug;

use super::metrics::Endpoint;
use crate::protocol::{self, ErrorKind, FrameError, Hello, PROTOCOL_VERSION, Request, Response};

/// How long a control connection may wait for its next request (the first one too).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a snapshot may take to reach a subscriber before the subscription ends.
const SUBSCRIBER_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one CLI connection until it closes, goes idle or breaks.
pub async fn connection(stream: UnixStream, keeper: &Path, metrics: &Arc<Endpoint>) {
    if let Err(e) = serve(stream, keeper, metrics).await {
        debug!(error = %e, "control connection ended");
    }
    // A large request (a thousand apps) is decoded into many small blocks, all freed by now.
    crate::heap::give_back_if_large();
}

async fn send(
    writer: &mut OwnedWriteHalf,
    value: &impl serde::Serialize,
) -> Result<(), FrameError> {
    writer.write_all(&protocol::encode_frame(value)?).await?;
    Ok(())
}

/// Asks the keeper one question whose answer is a single frame (`list`, `jobs`).
pub async fn ask(keeper: &Path, request: &Request) -> Result<Response, String> {
    let mut upstream = Upstream::open(keeper, request).await?;
    upstream
        .next()
        .await
        .ok_or_else(|| "the daemon's keeper closed the connection before answering".to_string())
}

async fn serve(
    stream: UnixStream,
    keeper: &Path,
    metrics: &Arc<Endpoint>,
) -> Result<(), FrameError> {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let hello = Hello {
        protocol: PROTOCOL_VERSION,
        version: crate::VERSION.to_string(),
        // The daemon's pid is the keeper's: it is the one in daemon.pid, and it outlives controllers.
        pid: nix::unistd::getppid().as_raw() as u32,
    };
    send(&mut writer, &hello).await?;
    loop {
        let Ok(read) =
            tokio::time::timeout(IDLE_TIMEOUT, protocol::read_line_async(&mut reader)).await
        else {
            debug!("closing a control connection idle for {IDLE_TIMEOUT:?}");
            return Ok(());
        };
        let line = match read {
            Ok(Some(line)) => line,
            Ok(None) => return Ok(()),
            Err(FrameError::TooLarge) => {
                let error = Response::error(ErrorKind::BadRequest, "request too large");
                send(&mut writer, &error).await?;
                return Err(FrameError::TooLarge);
            }
            Err(e) => return Err(e),
        };
        crate::heap::note_frame(line.len());
        let request = match protocol::decode::<Request>(&line) {
            Ok(request) => request,
            Err(e) => {
                let message = format!(
                    "cannot decode the request ({e}); is the CLI the same version as the daemon?"
                );
                send(
                    &mut writer,
                    &Response::error(ErrorKind::BadRequest, message),
                )
                .await?;
                continue;
            }
        };
        if let Request::SetMetrics(setting) = request {
            // The endpoint is this process's own: answered here, never relayed.
            let answer = match metrics.set(setting) {
                Ok(()) => Response::Ok,
                Err(message) => Response::error(ErrorKind::Conflict, message),
            };
            send(&mut writer, &answer).await?;
            continue;
        }
        let subscription = matches!(request, Request::Subscribe { .. } | Request::Events { .. });
        let mut upstream = match Upstream::open(keeper, &request).await {
            Ok(upstream) => upstream,
            Err(message) => {
                send(&mut writer, &Response::error(ErrorKind::Os, message)).await?;
                continue;
            }
        };
        if subscription {
            return upstream.stream_to(&mut reader, &mut writer).await;
        }
        loop {
            let Some((line, progress)) = upstream.next_line().await else {
                let closed = Response::error(
                    ErrorKind::Os,
                    "the daemon's keeper closed the connection before answering \
                     (it may be stopping); see `herdsman list`",
                );
                send(&mut writer, &closed).await?;
                break;
            };
            writer.write_all(&line).await?;
            if !progress {
                break;
            }
        }
    }
}

/// A request relayed to the keeper, on a connection of its own.
struct Upstream {
    reader: BufReader<OwnedReadHalf>,
    _writer: OwnedWriteHalf,
}

impl Upstream {
    /// Connects to the keeper, checks its greeting and sends the request.
    async fn open(keeper: &Path, request: &Request) -> Result<Upstream, String> {
        let stream = UnixStream::connect(keeper).await.map_err(|e| {
            format!(
                "cannot reach the daemon's keeper at {}: {e}",
                keeper.display()
            )
        })?;
        let (reader, mut writer) = stream.into_split();
        let mut reader = BufReader::with_capacity(protocol::READ_CHUNK, reader);
        let hello: Hello = match protocol::read_line_async(&mut reader).await {
            Ok(Some(line)) => {
                protocol::decode(&line).map_err(|e| format!("the keeper's greeting: {e}"))?
            }
            Ok(None) => return Err("the daemon's keeper refused the connection".to_string()),
            Err(e) => return Err(format!("the keeper's greeting: {e}")),
        };
        if hello.protocol != PROTOCOL_VERSION {
            return Err(format!(
                "the daemon's keeper speaks protocol {} (herdsman {}) and its controller {}: \
                 run `herdsman update`",
                hello.protocol, hello.version, PROTOCOL_VERSION
            ));
        }
        let frame = protocol::encode_frame(request).map_err(|e| e.to_string())?;
        writer
            .write_all(&frame)
            .await
            .map_err(|e| format!("cannot pass the request to the daemon's keeper: {e}"))?;
        Ok(Upstream {
            reader,
            _writer: writer,
        })
    }

    /// The keeper's next answer; `None` when it closed the connection (or sent something undecodable).
    async fn next(&mut self) -> Option<Response> {
        match protocol::read_line_async(&mut self.reader).await {
            Ok(Some(line)) => protocol::decode(&line).ok(),
            _ => None,
        }
    }

    /// The keeper's next answer as it wrote it, with whether it is progress: a large answer (the jobs or
    /// processes of a thousand apps) is passed on without being decoded and encoded again. `None` when
    /// the keeper closed the connection or sent something that is no answer.
    async fn next_line(&mut self) -> Option<(Vec<u8>, bool)> {
        let mut line = protocol::read_line_async(&mut self.reader).await.ok()??;
        let progress = match Response::line_is_progress(&line) {
            Some(progress) => progress,
            None => Response::decode(&line).ok()?.is_progress(),
        };
        line.push(b'\n');
        Some((line, progress))
    }

    /// Passes a subscription's snapshots on until the keeper ends it or the client goes away (its end of
    /// the connection closes) or stops reading.
    async fn stream_to(
        mut self,
        client: &mut BufReader<OwnedReadHalf>,
        writer: &mut OwnedWriteHalf,
    ) -> Result<(), FrameError> {
        loop {
            let response = tokio::select! {
                response = self.next() => response,
                // A subscriber sends nothing more: anything it sends, or its end, ends the subscription.
                _ = protocol::read_line_async(client) => return Ok(()),
            };
            let Some(response) = response else {
                return Ok(());
            };
            match tokio::time::timeout(SUBSCRIBER_WRITE_TIMEOUT, send(writer, &response)).await {
                Ok(sent) => sent?,
                Err(_) => return Ok(()),
            }
        }
    }
}
