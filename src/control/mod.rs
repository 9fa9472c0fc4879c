//! The control protocol shared by the daemon and the CLI: one JSON request
//! line, one JSON response line, over a unix stream socket (mode 0600, and
//! the peer's uid is checked: root or the daemon's own user only).

pub mod client;
pub mod server;

use serde::{Deserialize, Serialize};

/// A request from the CLI (or the HTTP API) to the daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Liveness.
    Ping,
    /// Jails overview, or one jail in detail.
    Status {
        /// The jail, or every jail.
        #[serde(default)]
        jail: Option<String>,
    },
    /// Ban an address in a jail.
    Ban {
        /// The jail.
        jail: String,
        /// The address (validated by the daemon).
        ip: String,
    },
    /// Lift a ban: one address (in one jail or all), or everything.
    Unban {
        /// Restrict to this jail.
        #[serde(default)]
        jail: Option<String>,
        /// The address; `None` with `all`.
        #[serde(default)]
        ip: Option<String>,
        /// Lift every ban (of `jail`, or of every jail).
        #[serde(default)]
        all: bool,
    },
    /// Every ban in force.
    Banned,
    /// Re-read the configuration and swap it in atomically.
    Reload,
}

/// The daemon's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Whether the request succeeded.
    pub ok: bool,
    /// A one-line reason when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The result.
    #[serde(default)]
    pub data: serde_json::Value,
}

impl Response {
    /// Success with data.
    pub fn ok(data: serde_json::Value) -> Response {
        Response {
            ok: true,
            error: None,
            data,
        }
    }

    /// Failure with a reason.
    pub fn err(reason: impl Into<String>) -> Response {
        Response {
            ok: false,
            error: Some(reason.into()),
            data: serde_json::Value::Null,
        }
    }
}

/// One entry of `banned --json` (the DESIGN.md shape).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BannedItem {
    /// The jail.
    pub jail: String,
    /// The address.
    pub ip: String,
    /// Expiry as UNIX seconds, `null` for permanent.
    pub expires: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format() {
        let r = Request::Unban {
            jail: None,
            ip: Some("192.0.2.1".into()),
            all: false,
        };
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(
            s,
            r#"{"cmd":"unban","jail":null,"ip":"192.0.2.1","all":false}"#
        );
        let back: Request = serde_json::from_str(r#"{"cmd":"unban","ip":"192.0.2.1"}"#).unwrap();
        assert_eq!(back, r);
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"rm -rf"}"#).is_err());
    }
}
