//! The keeper's socket (`HERDSMAN_HOME/keeper.sock`): its controller's connections, each relaying one
//! request of a CLI (see `crate::controller`) to the supervisor. One task per connection; a bad frame
//! affects only that connection. Only the controller the keeper started may connect (SO_PEERCRED: its pid
//! and our uid); anyone else is refused and logged.
//!
//! A connection that waits more than [`IDLE_TIMEOUT`] for its next request is closed. A request being
//! processed has no deadline (a reload or a stop may take long), nor has a subscription. When the
//! controller dies, its connections close: the answers of requests it was relaying are dropped, and what
//! they started goes on here (a reload completes, a stop stops).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::controller;
use super::supervisor::{Message, SUBSCRIBER_QUEUE};
use crate::protocol::{
    self, ErrorKind, FrameError, Hello, PROTOCOL_VERSION, Request, Response, Selection,
};
use crate::systemd::Notifier;

/// How long a connection may wait for its next request (the first one too).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Requests whose final answer is not written yet: an in-place re-exec waits for them, so no answer is
/// lost with the connection it was to be written on.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// How many requests are still to be answered.
pub fn answers_in_flight() -> usize {
    IN_FLIGHT.load(Ordering::SeqCst)
}

/// Counts one request from when it reaches the supervisor until its final answer is written (or dropped).
struct InFlight;

impl InFlight {
    fn new() -> InFlight {
        IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Accepts the controller's connections until the supervisor is gone.
/// Each connection task holds a clone of `alive`, so the keeper can wait for the last replies to be flushed.
/// With systemd watching, `reload all` is announced (`RELOADING=1`, then `READY=1`) and `kill` too
/// (`STOPPING=1`).
pub async fn serve(
    listener: UnixListener,
    supervisor: mpsc::UnboundedSender<Message>,
    alive: mpsc::Sender<()>,
    notifier: Option<Notifier>,
    controller: Arc<controller::Shared>,
) {
    let uid = nix::unistd::geteuid().as_raw();
    let mut acceptor = crate::accepting::Acceptor::default();
    let mut refusals = crate::refusal::Refusals::default();
    loop {
        let stream = acceptor.accept(&listener, "keeper").await;
        match stream.peer_cred() {
            Ok(cred) if cred.uid() == uid && controller.admits(cred.pid()) => {}
            Ok(cred) => {
                let why = "only the controller this keeper started may connect to its socket; use the \
                           control socket (herdsman.sock)";
                refusals.refuse(stream, "keeper", cred.uid(), cred.pid(), why);
                continue;
            }
            Err(e) => {
                warn!(error = %e, "cannot read the peer's credentials: connection refused");
                continue;
            }
        }
        let (supervisor, alive, notifier) = (supervisor.clone(), alive.clone(), notifier.clone());
        tokio::spawn(async move {
            if let Err(e) = connection(stream, supervisor, notifier).await {
                debug!(error = %e, "keeper connection ended");
            }
            drop(alive);
        });
    }
}

async fn send(
    writer: &mut (impl AsyncWriteExt + Unpin),
    value: &impl serde::Serialize,
) -> Result<(), FrameError> {
    writer.write_all(&protocol::encode_frame(value)?).await?;
    Ok(())
}

async fn connection(
    stream: UnixStream,
    supervisor: mpsc::UnboundedSender<Message>,
    notifier: Option<Notifier>,
) -> Result<(), FrameError> {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let hello = Hello {
        protocol: PROTOCOL_VERSION,
        version: crate::VERSION.to_string(),
        pid: std::process::id(),
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
        match protocol::decode::<Request>(&line) {
            Ok(Request::Subscribe { interval_ms }) => {
                return subscription(interval_ms, &mut writer, &supervisor).await;
            }
            Ok(Request::Events { since_ms }) => {
                return event_stream(since_ms, &mut writer, &supervisor).await;
            }
            Ok(request) => {
                let update = matches!(request, Request::Update { .. });
                let reload_all = matches!(
                    request,
                    Request::Reload {
                        target: Selection::All,
                        ..
                    }
                );
                if let Some(notifier) = &notifier {
                    if reload_all {
                        notifier.reloading();
                    } else if matches!(request, Request::Kill) {
                        notifier.notify("STOPPING=1");
                    }
                }
                let (reply, mut answers) = mpsc::unbounded_channel();
                let in_flight = InFlight::new();
                if supervisor
                    .send(Message::Request { request, reply })
                    .is_err()
                {
                    return Ok(());
                }
                // Progress frames first, then one final answer.
                loop {
                    let response = answers.recv().await.unwrap_or_else(|| {
                        Response::error(ErrorKind::Os, "the daemon is shutting down")
                    });
                    if !response.is_progress() {
                        if let (Some(notifier), true) = (&notifier, reload_all) {
                            notifier.notify("READY=1");
                        }
                        let sent = send(&mut writer, &response).await;
                        drop(in_flight);
                        if update && matches!(response, Response::Ok) {
                            // The answer is on its way: the keeper may re-execute now (see handover.rs).
                            let _ = writer.flush().await;
                            let _ = supervisor.send(Message::Reexec);
                        }
                        sent?;
                        break;
                    }
                    send(&mut writer, &response).await?;
                }
            }
            Err(e) => {
                let message = format!(
                    "cannot decode the request ({e}); is the CLI the same version as the daemon?"
                );
                send(
                    &mut writer,
                    &Response::error(ErrorKind::BadRequest, message),
                )
                .await?;
            }
        }
    }
}

/// How long a snapshot may take to reach a subscriber before the subscription ends.
const SUBSCRIBER_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Streams snapshots until the client goes away or the daemon stops. The connection serves nothing else.
/// The supervisor drops a subscriber whose queue is full, which ends the stream here.
async fn subscription(
    interval_ms: u64,
    writer: &mut (impl AsyncWriteExt + Unpin),
    supervisor: &mpsc::UnboundedSender<Message>,
) -> Result<(), FrameError> {
    let (events, mut snapshots) = mpsc::channel(SUBSCRIBER_QUEUE);
    if supervisor
        .send(Message::Subscribe {
            interval_ms,
            events,
        })
        .is_err()
    {
        return Ok(());
    }
    while let Some(snapshot) = snapshots.recv().await {
        // A client that stopped reading (a suspended `monit`) is let go, not waited for.
        match tokio::time::timeout(SUBSCRIBER_WRITE_TIMEOUT, send(writer, &snapshot)).await {
            Ok(sent) => sent?,
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

/// Streams events until the client goes away or the daemon stops; as [`subscription`], a client that does
/// not keep up is dropped by the supervisor, never waited for.
async fn event_stream(
    since_ms: Option<u64>,
    writer: &mut (impl AsyncWriteExt + Unpin),
    supervisor: &mpsc::UnboundedSender<Message>,
) -> Result<(), FrameError> {
    let (events, mut stream) = mpsc::channel(super::supervisor::EVENT_QUEUE);
    if supervisor
        .send(Message::SubscribeEvents { since_ms, events })
        .is_err()
    {
        return Ok(());
    }
    while let Some(event) = stream.recv().await {
        match tokio::time::timeout(SUBSCRIBER_WRITE_TIMEOUT, send(writer, &event)).await {
            Ok(sent) => sent?,
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};

    async fn read_line(client: &mut BufReader<UnixStream>) -> String {
        let mut line = String::new();
        client.read_line(&mut line).await.expect("read");
        line
    }

    async fn send_request(client: &mut BufReader<UnixStream>, request: &Request) {
        let frame = protocol::encode_frame(request).expect("encode");
        client.get_mut().write_all(&frame).await.expect("write");
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_closed_but_not_while_its_request_is_processed() {
        let (ours, theirs) = UnixStream::pair().expect("pair");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let served = tokio::spawn(connection(ours, tx, None));
        let mut client = BufReader::new(theirs);
        assert!(read_line(&mut client).await.contains("protocol"));

        // A request the supervisor takes longer than the idle timeout to answer (a long stop).
        send_request(&mut client, &Request::List { brief: false }).await;
        let Some(Message::Request { reply, .. }) = rx.recv().await else {
            panic!("no request reached the supervisor");
        };
        tokio::time::sleep(IDLE_TIMEOUT * 3).await;
        reply
            .send(Response::Ok)
            .expect("the connection still waits");
        let answer = read_line(&mut client).await;
        assert!(
            matches!(protocol::decode(answer.as_bytes()), Ok(Response::Ok)),
            "{answer}"
        );

        // Then nothing: the connection is closed once the idle timeout has passed, not before.
        let idle = tokio::time::Instant::now();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.expect("read");
        assert!(rest.is_empty());
        assert!(idle.elapsed() >= IDLE_TIMEOUT);
        served.await.expect("task").expect("a clean end");
    }

    #[tokio::test(start_paused = true)]
    async fn a_subscription_has_no_idle_timeout() {
        let (ours, theirs) = UnixStream::pair().expect("pair");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _served = tokio::spawn(connection(ours, tx, None));
        let mut client = BufReader::new(theirs);
        read_line(&mut client).await;
        send_request(&mut client, &Request::Subscribe { interval_ms: 1000 }).await;
        let Some(Message::Subscribe { events, .. }) = rx.recv().await else {
            panic!("no subscription reached the supervisor");
        };
        tokio::time::sleep(IDLE_TIMEOUT * 3).await;
        let snapshot = Response::Snapshot {
            at_ms: 1,
            processes: Vec::new(),
        };
        events
            .send(snapshot)
            .await
            .expect("the subscription is open");
        let frame = read_line(&mut client).await;
        assert!(
            matches!(
                protocol::decode(frame.as_bytes()),
                Ok(Response::Snapshot { .. })
            ),
            "{frame}"
        );
    }
}
