//! RFC 5424 through `syslog_loose`, which parses this format correctly
//! (structured data included). Its RFC 3164 path is not used; see the
//! module docs of `syslog`.

use std::time::SystemTime;

use chrono::{FixedOffset, Utc};
use syslog_loose::{Message, Protocol, Variant};

use super::{Event, Format, ParseContext};

/// Parses a full RFC 5424 line (PRI included). `None` when it is not valid
/// RFC 5424, so the caller can fall back to the RFC 3164 reader.
pub(super) fn parse<'a>(line: &'a str, ctx: &ParseContext) -> Option<Event<'a>> {
    let utc: FixedOffset = Utc.fix();
    let m: Message<&'a str> =
        syslog_loose::parse_message_with_year_tz(line, |_| 1970, Some(utc), Variant::RFC5424);
    if !matches!(m.protocol, Protocol::RFC5424(_)) {
        return None;
    }
    let pid = match &m.procid {
        Some(syslog_loose::ProcId::PID(_)) | Some(syslog_loose::ProcId::Name(_)) => {
            procid_text(line, m.appname)
        }
        None => None,
    };
    let timestamp = m.timestamp.and_then(|t| {
        let secs = t.timestamp();
        let nanos = t.timestamp_subsec_nanos();
        if secs >= 0 {
            SystemTime::UNIX_EPOCH.checked_add(std::time::Duration::new(secs as u64, nanos))
        } else {
            None
        }
    });
    let msg = m.msg.trim_start_matches([' ', '\u{feff}']);
    Some(Event {
        received: ctx.received,
        peer: ctx.peer,
        format: Format::Rfc5424,
        host: m.hostname,
        program: m.appname.unwrap_or(""),
        pid,
        facility: m.facility.map(|f| f as u8),
        severity: m.severity.map(|s| s as u8),
        timestamp,
        msg,
    })
}

/// `syslog_loose` turns a numeric PROCID into an integer; we keep the text,
/// borrowed from the line, so the event stays allocation-free.
fn procid_text<'a>(line: &'a str, appname: Option<&'a str>) -> Option<&'a str> {
    let app = appname?;
    // APP-NAME is a slice of `line`; PROCID is the next space-separated field.
    let start = (app.as_ptr() as usize).checked_sub(line.as_ptr() as usize)? + app.len();
    let rest = line.get(start..)?.strip_prefix(' ')?;
    let field = rest.split(' ').next()?;
    (field != "-" && !field.is_empty()).then_some(field)
}

use chrono::Offset as _;
