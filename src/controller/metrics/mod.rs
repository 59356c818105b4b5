//! The metrics endpoint (`[daemon] metrics = "127.0.0.1:9615"`): a small HTTP server in the controller, so
//! that what comes from the network is parsed where a crash costs nothing. Off unless set; a scrape asks
//! the keeper for the same records `list --json` prints (and the jobs) and renders them (`render.rs`), so it
//! costs nothing between scrapes and reads the same samples `list` does.
//!
//! The setting comes with [`Request::SetMetrics`](crate::protocol::Request::SetMetrics) (the CLI sends it
//! when a file with `[daemon] metrics` is applied) and is kept in `HERDSMAN_HOME/metrics.json` (0600), so a
//! controller started again, or a daemon started later, serves it again. An address that is in use, or not
//! loopback without `allow_remote`, is refused with the endpoint left as it was.
//!
//! HTTP: `GET /metrics` (or `/`) answers the page, Prometheus text 0.0.4 or OpenMetrics 1.0.0 when the
//! `Accept` header asks for `application/openmetrics-text`; anything else is 404 or 405. One request per
//! connection, whose head must arrive within [`HEAD_TIMEOUT`] and fit in [`HEAD_MAX`] bytes.

mod render;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::home::Home;
use crate::protocol::{JobRequest, MetricsSetting, Request, Response};
pub use render::{Format, render};

/// How long a client may take to send its request's head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request head read.
const HEAD_MAX: usize = 8192;

/// What the endpoint serves, and the task serving it.
struct Serving {
    setting: MetricsSetting,
    task: JoinHandle<()>,
}

/// The endpoint of this controller. The lock guards a swap of the serving task: held for no `.await`.
pub struct Endpoint {
    keeper: Arc<PathBuf>,
    file: PathBuf,
    serving: Mutex<Option<Serving>>,
}

impl Endpoint {
    pub fn new(home: &Home, keeper: Arc<PathBuf>) -> Arc<Endpoint> {
        Arc::new(Endpoint {
            keeper,
            file: home.root().join("metrics.json"),
            serving: Mutex::new(None),
        })
    }

    /// Serves the setting kept in the home, if any (a controller started again, a daemon started later).
    pub fn resume(self: &Arc<Self>) {
        let Ok(bytes) = std::fs::read(&self.file) else {
            return;
        };
        match serde_json::from_slice::<MetricsSetting>(&bytes) {
            Ok(setting) => {
                if let Err(e) = self.apply(setting, false) {
                    warn!(error = %e, "the metrics endpoint is not served");
                }
            }
            Err(e) => {
                warn!(file = %self.file.display(), error = %e, "unreadable metrics setting: ignored")
            }
        }
    }

    /// Serves the endpoint as set (or stops serving it), and keeps the setting. Refused: nothing changed.
    pub fn set(self: &Arc<Self>, setting: MetricsSetting) -> Result<(), String> {
        self.apply(setting, true)
    }

    fn apply(self: &Arc<Self>, setting: MetricsSetting, keep: bool) -> Result<(), String> {
        setting.check()?;
        let mut serving = self
            .serving
            .lock()
            .map_err(|_| "the metrics endpoint's state is poisoned".to_string())?;
        let same = serving
            .as_ref()
            .is_some_and(|s| s.setting.listen == setting.listen);
        if !same {
            let next = match setting.listen {
                Some(addr) => Some(self.bind(addr)?),
                None => None,
            };
            if let Some(old) = serving.take() {
                old.task.abort();
            }
            if let Some(listener) = next {
                let this = Arc::clone(self);
                let task = tokio::spawn(async move { this.serve(listener).await });
                *serving = Some(Serving {
                    setting: setting.clone(),
                    task,
                });
            }
        } else if let Some(s) = serving.as_mut() {
            s.setting = setting.clone();
        }
        drop(serving);
        if keep {
            self.keep(&setting)?;
        }
        match setting.listen {
            Some(addr) => info!(%addr, "metrics endpoint served"),
            None => info!("metrics endpoint off"),
        }
        Ok(())
    }

    fn bind(&self, addr: SocketAddr) -> Result<TcpListener, String> {
        let listener = std::net::TcpListener::bind(addr).map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                format!("metrics address {addr} is already in use: choose another [daemon] metrics")
            }
            _ => format!("cannot serve metrics on {addr}: {e}"),
        })?;
        listener
            .set_nonblocking(true)
            .and_then(|()| TcpListener::from_std(listener))
            .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))
    }

    fn keep(&self, setting: &MetricsSetting) -> Result<(), String> {
        let result = if setting.listen.is_none() {
            match std::fs::remove_file(&self.file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        } else {
            serde_json::to_vec(setting)
                .map_err(std::io::Error::other)
                .and_then(|bytes| crate::daemon::persist::write_private(&self.file, &bytes, false))
        };
        result.map_err(|e| {
            format!(
                "cannot keep the metrics setting in {}: {e}",
                self.file.display()
            )
        })
    }

    async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let this = Arc::clone(&self);
                    tokio::spawn(async move {
                        if let Err(e) = this.answer(stream).await {
                            debug!(error = %e, "metrics connection ended");
                        }
                    });
                }
                Err(e) => {
                    warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// One HTTP request: its head, then the page (or an error status), then the connection is closed.
    async fn answer(&self, mut stream: TcpStream) -> std::io::Result<()> {
        let mut head = Vec::with_capacity(1024);
        let read = tokio::time::timeout(HEAD_TIMEOUT, async {
            let mut chunk = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < HEAD_MAX {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&chunk[..n]);
            }
            Ok::<(), std::io::Error>(())
        })
        .await;
        if !matches!(read, Ok(Ok(()))) {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&head);
        let mut lines = text.split("\r\n");
        let mut request_line = lines.next().unwrap_or_default().split(' ');
        let (method, target) = (
            request_line.next().unwrap_or(""),
            request_line.next().unwrap_or(""),
        );
        let accept = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("accept"))
            .map(|(_, v)| v.trim().to_string());
        let path = target.split('?').next().unwrap_or("");
        let (status, content_type, body) = if method != "GET" && method != "HEAD" {
            (
                "405 Method Not Allowed",
                "text/plain; charset=utf-8",
                "only GET\n".to_string(),
            )
        } else if path != "/metrics" && path != "/" {
            (
                "404 Not Found",
                "text/plain; charset=utf-8",
                "the metrics are at /metrics\n".to_string(),
            )
        } else {
            let format = Format::from_accept(accept.as_deref());
            match self.page(format).await {
                Ok(page) => ("200 OK", format.content_type(), page),
                Err(e) => (
                    "503 Service Unavailable",
                    "text/plain; charset=utf-8",
                    format!("{e}\n"),
                ),
            }
        };
        let mut response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        if method != "HEAD" {
            response.extend_from_slice(body.as_bytes());
        }
        stream.write_all(&response).await?;
        stream.shutdown().await
    }

    /// Asks the keeper for the records and jobs, and renders them.
    async fn page(&self, format: Format) -> Result<String, String> {
        let processes =
            match super::relay::ask(&self.keeper, &Request::List { brief: false }).await? {
                Response::Processes { processes } => processes,
                other => return Err(format!("unexpected answer from the keeper: {other:?}")),
            };
        let jobs = match super::relay::ask(
            &self.keeper,
            &Request::Job(JobRequest::List { brief: false }),
        )
        .await?
        {
            Response::Jobs { jobs } => jobs,
            _ => Vec::new(),
        };
        Ok(render(&processes, &jobs, format))
    }
}
