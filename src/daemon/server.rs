//! The control server: accepts CLI connections on the Unix socket and relays their requests to the
//! supervisor. One task per connection; a bad frame or a bad peer affects only that connection.

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::supervisor::{Message, SUBSCRIBER_QUEUE};
use crate::protocol::{
    self, ErrorKind, FrameError, Hello, PROTOCOL_VERSION, Request, Response, Selection,
};
use crate::systemd::Notifier;

/// Accepts connections until the listener fails or the supervisor is gone.
/// Each connection task holds a clone of `alive`, so the daemon can wait for the last replies to be flushed.
/// With systemd watching, `reload all` is announced (`RELOADING=1`, then `READY=1`) and `kill` too
/// (`STOPPING=1`).
pub async fn serve(
    listener: UnixListener,
    supervisor: mpsc::UnboundedSender<Message>,
    alive: mpsc::Sender<()>,
    notifier: Option<Notifier>,
) {
    let uid = nix::unistd::geteuid().as_raw();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, most likely: wait a little instead of spinning.
                warn!(error = %e, "accept on the control socket failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        // Only this user, or root, may drive the daemon.
        match stream.peer_cred() {
            Ok(cred) if cred.uid() == uid || cred.uid() == 0 => {}
            Ok(cred) => {
                warn!(
                    peer_uid = cred.uid(),
                    "refused a control connection from another user"
                );
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
                debug!(error = %e, "control connection ended");
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
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
    };
    send(&mut writer, &hello).await?;
    loop {
        let line = match protocol::read_line_async(&mut reader).await {
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
            Ok(request) => {
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
                        send(&mut writer, &response).await?;
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
