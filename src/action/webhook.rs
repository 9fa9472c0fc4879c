//! The `webhook` action: an HTTP POST of a JSON document per notification
//! (one ban, or a digest), for Slack, Mattermost, Matrix (hookshot), ntfy,
//! or a script of the admin's. Digesting, retries and the sender thread are
//! [`crate::notify`]'s; this file owns the options, the document and the
//! request.
//!
//! The HTTP client is `ureq` (blocking, small, TLS through rustls with the
//! Mozilla roots of `webpki-roots`; no OpenSSL, builds on musl). It runs on
//! the notifier's own thread, so a blocking client is the simple fit, and
//! it adds no async runtime to a thread that needs none. Redirects are not
//! followed (a bearer token is never sent on to another host).
//!
//! Options: `url` (required, http or https), `token` or `token_file` (sent
//! as `Authorization: Bearer`; the file is read at load and reload),
//! `ca_file` (PEM roots for a private CA, instead of the Mozilla roots),
//! `topic` (adds ntfy's `topic`/`title`/`message` fields), and the common
//! `interval`, `startstop`, `timeout` (default 10s), `retries`, `lines`.
//!
//! The document (`event` is `ban`, `start` or `stop`):
//!
//! ```json
//! {"event": "ban", "host": "gw1", "jail": "sshd",
//!  "text": "[gw1] sshd: banned 192.0.2.1 (5 failures, 10m)",
//!  "count": 1, "unlisted": 0,
//!  "bans": [{"ip": "192.0.2.1", "failures": 5, "bantime": 600,
//!            "time": 1767225600, "expires": 1767226200, "ban_count": 1,
//!            "origin": "stream", "matches": ["..."]}],
//!  "ip": "192.0.2.1", "failures": 5, "bantime": 600, "expires": 1767226200,
//!  "matches": ["..."]}
//! ```
//!
//! The top-level `ip`, `failures`, `bantime`, `expires`, `matches` are
//! present when the document reports exactly one ban. `bantime` is seconds
//! (-1: permanent), times are UNIX seconds (`expires` null: permanent).
//! `text` holds only what banstream wrote (never log text, which could
//! carry chat mentions or links); `matches` are foreign text made inert.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use crate::notify::text::{inert, unix, MAX_LINE};
use crate::notify::{self, Channel, Common, DeliveryError, Entry, Notice, Notifier, What};

/// The `webhook` backend.
pub type WebhookBackend = Notifier<Webhook>;

/// Options of `webhook` besides the common ones.
const KEYS: &[&str] = &["url", "token", "token_file", "ca_file", "topic"];
/// Default deadline of one request.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of one `webhook` action. Its Debug output hides the token.
#[derive(Clone)]
pub struct WebhookConfig {
    /// Interval, retries, timeout, lines, start/stop.
    pub common: Common,
    /// Where to POST.
    pub url: String,
    token: Option<String>,
    roots: Option<Arc<Vec<Certificate<'static>>>>,
    /// ntfy topic, if any.
    pub topic: Option<String>,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .finish_non_exhaustive()
    }
}

fn read_token(path: &str) -> Result<String, String> {
    let raw = std::fs::read_to_string(path).map_err(|e| format!("token_file {path:?}: {e}"))?;
    Ok(raw.trim().to_string())
}

impl WebhookConfig {
    fn parse(o: &BTreeMap<String, String>) -> Result<WebhookConfig, String> {
        notify::check_keys("webhook", o, KEYS)?;
        let common = Common::parse(o, DEFAULT_TIMEOUT)?;
        let url = o
            .get("url")
            .map(|u| u.trim().to_string())
            .ok_or("webhook needs url=... (quote it if it holds a comma)")?;
        let uri: ureq::http::Uri = url
            .parse()
            .map_err(|e| format!("url {url:?} is not a URL: {e}"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(format!(
                "url {url:?} must be http:// or https:// with a host"
            ));
        }
        let token = match (o.get("token"), o.get("token_file")) {
            (Some(_), Some(_)) => return Err("give token or token_file, not both".into()),
            (Some(t), None) => Some(t.trim().to_string()),
            (None, Some(p)) => Some(read_token(p.trim())?),
            (None, None) => None,
        };
        if let Some(t) = &token {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) {
                return Err("the bearer token must be one word of visible ASCII".into());
            }
        }
        let roots = match o.get("ca_file") {
            None => None,
            Some(p) => {
                let pem = std::fs::read(p.trim()).map_err(|e| format!("ca_file {p:?}: {e}"))?;
                let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
                    .filter_map(|i| match i {
                        Ok(PemItem::Certificate(c)) => Some(c),
                        _ => None,
                    })
                    .collect();
                if certs.is_empty() {
                    return Err(format!("ca_file {p:?} holds no PEM certificate"));
                }
                Some(Arc::new(certs))
            }
        };
        let topic = o.get("topic").map(|t| t.trim().to_string());
        if let Some(t) = &topic {
            if t.is_empty()
                || t.len() > 64
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(format!("topic {t:?} must be 1 to 64 of A-Z a-z 0-9 - _"));
            }
        }
        Ok(WebhookConfig {
            common,
            url,
            token,
            roots,
            topic,
        })
    }

    fn agent(&self) -> ureq::Agent {
        let mut tls = TlsConfig::builder();
        if let Some(r) = &self.roots {
            tls = tls.root_certs(RootCerts::Specific(r.clone()));
        }
        ureq::Agent::config_builder()
            .timeout_global(Some(self.common.timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(format!("banstream/{}", env!("CARGO_PKG_VERSION")))
            .tls_config(tls.build())
            .build()
            .new_agent()
    }
}

/// Checks a `webhook` action's options at config load; returns warnings.
pub fn validate(o: &BTreeMap<String, String>) -> Result<Vec<String>, String> {
    let c = WebhookConfig::parse(o)?;
    let mut warnings = Vec::new();
    let uri: Result<ureq::http::Uri, _> = c.url.parse();
    let plain_remote = uri.is_ok_and(|u| {
        u.scheme_str() == Some("http")
            && !matches!(u.host(), Some("localhost" | "127.0.0.1" | "[::1]" | "::1"))
    });
    if plain_remote && c.token.is_some() {
        warnings.push(format!(
            "webhook: {} is plain http to another host: the bearer token crosses the network in clear",
            c.url
        ));
    }
    if o.contains_key("token") {
        warnings.push("webhook: prefer token_file=... to an inline token (the config is easier to share without it)".into());
    }
    Ok(warnings)
}

/// The webhook channel.
pub struct Webhook;

fn ban_json(e: &Entry) -> Value {
    json!({
        "ip": e.ip.to_string(),
        "failures": e.failures,
        "bantime": e.bantime.as_secs_i64(),
        "time": unix(e.start),
        "expires": e.expires.map(unix),
        "ban_count": e.ban_count,
        "origin": match e.origin {
            crate::ban::BanOrigin::Stream => "stream",
            crate::ban::BanOrigin::Manual => "manual",
            crate::ban::BanOrigin::Restored => "restored",
        },
        "matches": e.matches.iter().map(|l| inert(&l.text, MAX_LINE, l.cut)).collect::<Vec<_>>(),
    })
}

/// The JSON document of a notice.
pub fn document(cfg: &WebhookConfig, notice: &Notice) -> Value {
    let host = &notice.host;
    let jail = notice.jail.as_str();
    let (event, text, bans, unlisted) = match &notice.what {
        What::Started => ("start", format!("[{host}] {jail}: started"), Vec::new(), 0),
        What::Stopped => ("stop", format!("[{host}] {jail}: stopped"), Vec::new(), 0),
        What::Bans { entries, unlisted } => {
            let text = match entries.first() {
                Some(e) if notice.ban_count() == 1 => format!(
                    "[{host}] {jail}: banned {} ({} failures, {})",
                    e.ip, e.failures, e.bantime
                ),
                _ => format!("[{host}] {jail}: {} addresses banned", notice.ban_count()),
            };
            ("ban", text, entries.iter().collect::<Vec<_>>(), *unlisted)
        }
    };
    let mut doc = json!({
        "event": event,
        "host": host,
        "jail": jail,
        "text": text,
        "count": bans.len() as u64 + unlisted,
        "unlisted": unlisted,
        "bans": bans.iter().map(|e| ban_json(e)).collect::<Vec<_>>(),
    });
    if let (Some(e), 0, 1) = (bans.first(), unlisted, bans.len()) {
        let one = ban_json(e);
        for k in ["ip", "failures", "bantime", "expires", "matches"] {
            doc[k] = one[k].clone();
        }
    }
    if let Some(t) = &cfg.topic {
        doc["topic"] = json!(t);
        doc["title"] = json!(format!("banstream {jail} on {host}"));
        doc["message"] = json!(text);
    }
    doc
}

impl Channel for Webhook {
    type Config = WebhookConfig;
    const KIND: &'static str = "webhook";

    fn config(o: &BTreeMap<String, String>) -> Result<WebhookConfig, String> {
        WebhookConfig::parse(o)
    }

    fn common(c: &WebhookConfig) -> &Common {
        &c.common
    }

    fn target(c: &WebhookConfig) -> String {
        c.url.clone()
    }

    fn deliver(&mut self, cfg: &WebhookConfig, notice: &Notice) -> Result<(), DeliveryError> {
        let body = document(cfg, notice).to_string();
        let mut req = cfg
            .agent()
            .post(&cfg.url)
            .header("Content-Type", "application/json");
        if let Some(t) = &cfg.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        match req.send(body.as_bytes()) {
            Ok(resp) => {
                let status = resp.status().as_u16();
                match status {
                    200..=299 => Ok(()),
                    408 | 429 | 500..=599 => Err(DeliveryError::Transient(format!(
                        "{} answered HTTP {status}",
                        cfg.url
                    ))),
                    _ => Err(DeliveryError::Permanent(format!(
                        "{} answered HTTP {status}",
                        cfg.url
                    ))),
                }
            }
            Err(e @ ureq::Error::BadUri(_)) => {
                Err(DeliveryError::Permanent(format!("{}: {e}", cfg.url)))
            }
            Err(e) => Err(DeliveryError::Transient(format!("{}: {e}", cfg.url))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ban::BanOrigin;
    use crate::config::TimeSpec;
    use crate::jail::JailName;
    use crate::notify::MatchedLine;
    use std::time::SystemTime;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_document_has_the_documented_shape() {
        let cfg = WebhookConfig::parse(&opts(&[
            ("url", "https://hooks.example.org/x"),
            ("topic", "bans"),
        ]))
        .unwrap();
        let e = Entry {
            ip: "192.0.2.1".parse().unwrap(),
            failures: 5,
            bantime: TimeSpec::Forever,
            start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600),
            expires: None,
            ban_count: 2,
            origin: BanOrigin::Stream,
            matches: Arc::from(vec![MatchedLine {
                text: "Failed password for <!channel>\r\n~!id".into(),
                cut: 0,
            }]),
        };
        let n = Notice {
            jail: JailName::new("sshd").unwrap(),
            host: "gw1".into(),
            what: What::Bans {
                entries: vec![e],
                unlisted: 0,
            },
        };
        let d = document(&cfg, &n);
        assert_eq!(d["event"], "ban");
        assert_eq!(d["jail"], "sshd");
        assert_eq!(d["host"], "gw1");
        assert_eq!(d["ip"], "192.0.2.1");
        assert_eq!(d["failures"], 5);
        assert_eq!(d["bantime"], -1);
        assert!(d["expires"].is_null());
        assert_eq!(d["count"], 1);
        assert_eq!(d["bans"][0]["time"], 1_767_225_600);
        assert_eq!(d["matches"][0], "Failed password for <!channel>^M^J~!id");
        assert!(!d["text"].as_str().unwrap().contains("channel"));
        assert_eq!(d["topic"], "bans");
    }

    #[test]
    fn options_are_validated_and_the_token_stays_hidden() {
        assert!(WebhookConfig::parse(&opts(&[])).is_err());
        assert!(WebhookConfig::parse(&opts(&[("url", "ftp://x/")])).is_err());
        assert!(WebhookConfig::parse(&opts(&[("url", "https://x/"), ("token", "a b")])).is_err());
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "s3cr3t\n").unwrap();
        let c = WebhookConfig::parse(&opts(&[
            ("url", "http://203.0.113.9/hook"),
            ("token_file", f.to_str().unwrap()),
        ]))
        .unwrap();
        assert_eq!(c.token.as_deref(), Some("s3cr3t"));
        assert!(!format!("{c:?}").contains("s3cr3t"));
        let w = validate(&opts(&[
            ("url", "http://203.0.113.9/hook"),
            ("token_file", f.to_str().unwrap()),
        ]))
        .unwrap();
        assert!(w.iter().any(|w| w.contains("in clear")), "{w:?}");
        assert!(WebhookConfig::parse(&opts(&[
            ("url", "https://x/"),
            ("token_file", "/nonexistent/t")
        ]))
        .is_err());
    }
}
