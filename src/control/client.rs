//! The CLI side of the control socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Request, Response};

/// Why the daemon could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens at the socket.
    #[error("banstream is not running (no control socket at {path}: {source})")]
    NotRunning {
        /// The socket path tried.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The exchange failed.
    #[error("control socket {path}: {reason}")]
    Protocol {
        /// The socket path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// Sends one request and waits for the answer (up to `timeout`).
pub fn call(path: &Path, req: &Request, timeout: Duration) -> Result<Response, ClientError> {
    let proto = |reason: String| ClientError::Protocol {
        path: path.to_path_buf(),
        reason,
    };
    let mut s = UnixStream::connect(path).map_err(|source| ClientError::NotRunning {
        path: path.to_path_buf(),
        source,
    })?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| proto(e.to_string()))?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| proto(e.to_string()))?;
    let mut line = serde_json::to_vec(req).map_err(|e| proto(e.to_string()))?;
    line.push(b'\n');
    s.write_all(&line)
        .map_err(|e| proto(format!("write: {e}")))?;
    let mut reader = BufReader::new(s);
    let mut resp = String::new();
    reader
        .read_line(&mut resp)
        .map_err(|e| proto(format!("read: {e}")))?;
    if resp.is_empty() {
        return Err(proto(
            "the daemon closed the connection without answering".into(),
        ));
    }
    serde_json::from_str(&resp).map_err(|e| proto(format!("bad answer: {e}")))
}
