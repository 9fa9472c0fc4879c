//! The daemon side of the control socket. Each connection carries one
//! request; it is handed to the engine task with a oneshot for the reply,
//! so ban state keeps a single owner.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Request, Response};

/// A request with its reply channel.
pub type Call = (Request, oneshot::Sender<Response>);

/// Largest request line accepted.
const MAX_REQUEST: u64 = 64 * 1024;
/// A client must send its request within this time.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The control socket could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("control socket {path}: {source}")]
pub struct ControlError {
    /// The socket path.
    pub path: PathBuf,
    /// The OS error.
    pub source: std::io::Error,
}

/// Binds the control socket (mode 0600) and serves it until cancelled.
pub fn start(
    path: &Path,
    calls: mpsc::Sender<Call>,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> Result<(), ControlError> {
    let err = |source| ControlError {
        path: path.to_path_buf(),
        source,
    };
    crate::ingest::prepare_socket_path(path).map_err(err)?;
    let listener = UnixListener::bind(path).map_err(err)?;
    crate::ingest::chmod(path, 0o600).map_err(err)?;
    let me = nix::unistd::geteuid().as_raw();
    let path = path.to_path_buf();
    tracing::info!(path = %path.display(), "control socket ready");
    let conns = tracker.clone();
    tracker.spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = cancel.cancelled() => break,
                r = listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::debug!("control accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            // Defence in depth beyond the 0600 mode: root or our own user only.
            let uid = stream.peer_cred().ok().map(|c| c.uid());
            if !uid.is_some_and(|u| u == 0 || u == me) {
                tracing::warn!(?uid, "control connection refused");
                continue;
            }
            let calls = calls.clone();
            conns.spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut line = String::new();
                let mut reader = BufReader::new(r).take(MAX_REQUEST);
                let resp = match tokio::time::timeout(READ_TIMEOUT, reader.read_line(&mut line))
                    .await
                {
                    Err(_) => Response::err("timed out waiting for the request"),
                    Ok(Err(e)) => Response::err(format!("read error: {e}")),
                    Ok(Ok(_)) => match serde_json::from_str::<Request>(line.trim()) {
                        Err(e) => Response::err(format!("bad request: {e}")),
                        Ok(req) => {
                            let (tx, rx) = oneshot::channel();
                            if calls.send((req, tx)).await.is_err() {
                                Response::err("daemon is shutting down")
                            } else {
                                rx.await
                                    .unwrap_or_else(|_| Response::err("daemon is shutting down"))
                            }
                        }
                    },
                };
                let mut out =
                    serde_json::to_vec(&resp).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
                out.push(b'\n');
                let _ = w.write_all(&out).await;
                let _ = w.shutdown().await;
            });
        }
        crate::ingest::remove_socket(&path);
    });
    Ok(())
}
