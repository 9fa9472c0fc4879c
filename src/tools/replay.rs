//! `banstream replay [-c FILE] LOGFILE [--json]`: the whole configuration
//! in dry-run over a log file, with the messages' own timestamps as the
//! clock. Bans, expiries, ban-time increments and recidive follow the same
//! [`Engine`] the daemon runs; nothing reaches a firewall.
//!
//! It is also the whole-pipeline benchmark, so the work is split the way the
//! engine allows:
//!
//! ```text
//! reader ──chunks (1 MiB, cut at a newline)──► matchers (cores - 1)  ──hits──► applier
//!   │ year reference per chunk                    parse + route + filter           reorders by chunk,
//!   │                                             (stateless: Matcher)             counts, bans (Engine)
//! ```
//!
//! - The reader fills large buffers and never splits a line. For RFC 3164
//!   timestamps (no year) it hands each chunk the time of the previous
//!   chunk's last stamped line, so every matcher infers years exactly as a
//!   sequential pass would (Dec → Jan rolls over).
//! - Matchers parse each line in place (no allocation per line: events and
//!   verdicts borrow the chunk) and keep only lines some jail matched, as
//!   byte spans into the chunk.
//! - The applier rebuilds each matched event from its spans and applies it
//!   to the engine in input order, at the message's time. Lines that matched
//!   nothing never reach it. When the next chunk in order is not matched
//!   yet, the applier matches the oldest waiting chunk itself rather than
//!   idle (applying costs less than matching).

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::ops::Range;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::ban::{Ban, Effect, UnbanReason};
use crate::config::resolve::{JailKind, Settings};
use crate::engine::{Engine, Matcher};
use crate::filter::{HitKind, Verdict};
use crate::syslog::timestamp::{civil_from_days, days_from_civil};
use crate::syslog::{self, Event, Format, ParseContext, Peer};
use crate::telemetry::Metrics;

/// Bytes per chunk handed to a matcher.
const CHUNK: usize = 1 << 20;
/// Lines searched backwards for the last timestamp of a chunk.
const STAMP_SEARCH: usize = 64;

/// How to replay.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Print JSON (one object per ban, then the summary).
    pub json: bool,
    /// The year of the first year-less timestamp.
    pub year: Option<i32>,
    /// Also report unbans.
    pub unbans: bool,
    /// Matcher threads (default: the number of cores less one).
    pub threads: Option<usize>,
}

/// What replay reports as it happens.
#[derive(Debug, Clone, Copy)]
pub enum Happening<'a> {
    /// A ban decided at its start time.
    Ban(&'a Ban),
    /// A ban lifted at `at` (its expiry).
    Unban(&'a Ban, UnbanReason, SystemTime),
}

/// Totals of one jail.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JailTotals {
    /// The jail.
    pub jail: String,
    /// Failures counted (for recidive: bans in other jails).
    pub failures: u64,
    /// Bans issued.
    pub bans: u64,
    /// Failures without a usable address.
    pub unattributed: u64,
    /// Failures from ignored addresses.
    pub ignored: u64,
}

/// The outcome of a replay.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Non-blank lines read.
    pub lines: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Failures counted by the jails that read log lines.
    pub failures: u64,
    /// Bans issued (recidive included).
    pub bans: u64,
    /// Bans lifted by expiry.
    pub unbans: u64,
    /// Bans still in force after the last line.
    pub active_at_end: usize,
    /// Time of the first matched line.
    pub first: Option<SystemTime>,
    /// Time of the last matched line.
    pub last: Option<SystemTime>,
    /// Per jail.
    pub jails: Vec<JailTotals>,
    /// Wall-clock seconds.
    pub elapsed: f64,
    /// Matcher threads used.
    pub threads: usize,
    /// CPU seconds the applier thread spent applying: the serial part of
    /// the pipeline (reading and matching run on the other threads).
    pub apply_busy: f64,
}

impl Summary {
    /// Lines per second.
    pub fn rate(&self) -> f64 {
        if self.elapsed > 0.0 {
            self.lines as f64 / self.elapsed
        } else {
            0.0
        }
    }
}

/// A piece of the input, cut at a newline.
struct Chunk {
    seq: u64,
    data: Vec<u8>,
    /// The time year-less timestamps of this chunk are placed near.
    reference: SystemTime,
    /// Empty vectors (kept from an applied chunk) for the matches.
    hits: Vec<HitLine>,
    verdicts: Vec<(usize, VerdictSpans)>,
}

/// The buffers of an applied chunk, back for the next one: reusing them
/// spares a fresh allocation (and its page faults and release) per chunk.
#[derive(Default)]
struct Spare {
    data: Vec<u8>,
    hits: Vec<HitLine>,
    verdicts: Vec<(usize, VerdictSpans)>,
}

/// A byte range within a chunk's text.
type Span = Range<usize>;

/// An event as spans into its chunk.
struct EventSpans {
    format: Format,
    host: Option<Span>,
    program: Span,
    pid: Option<Span>,
    facility: Option<u8>,
    severity: Option<u8>,
    timestamp: Option<SystemTime>,
    msg: Span,
}

/// A verdict as spans into its chunk (misses are never kept).
#[derive(Clone)]
enum VerdictSpans {
    Ignored {
        regex: usize,
    },
    Hit {
        regex: usize,
        host: Option<Span>,
        user: Option<Span>,
        kind: HitKind,
    },
    Login {
        regex: usize,
        end: usize,
    },
}

/// A line some jail matched.
struct HitLine {
    time: SystemTime,
    ev: EventSpans,
    verdicts: Range<usize>,
}

/// A matched chunk.
struct Matched {
    seq: u64,
    text: String,
    lines: u64,
    bytes: u64,
    hits: Vec<HitLine>,
    verdicts: Vec<(usize, VerdictSpans)>,
}

/// Where `part` lies within `base` (empty when it is not a slice of it, like
/// the static "" of an unparsed line's program).
fn span(base: &str, part: &str) -> Span {
    let b = base.as_ptr() as usize;
    let p = part.as_ptr() as usize;
    if part.is_empty() || p < b || p + part.len() > b + base.len() {
        return 0..0;
    }
    (p - b)..(p - b + part.len())
}

impl EventSpans {
    fn of(text: &str, ev: &Event<'_>) -> EventSpans {
        EventSpans {
            format: ev.format,
            host: ev.host.map(|h| span(text, h)),
            program: span(text, ev.program),
            pid: ev.pid.map(|p| span(text, p)),
            facility: ev.facility,
            severity: ev.severity,
            timestamp: ev.timestamp,
            msg: span(text, ev.msg),
        }
    }

    /// The bytes of the line the fields lie in (at most [`PREFETCH_MAX`]).
    fn text(&self) -> Span {
        let start = [self.host.as_ref(), Some(&self.program), Some(&self.msg)]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .map(|s| s.start)
            .min()
            .unwrap_or(self.msg.start);
        start..self.msg.end.min(start + PREFETCH_MAX)
    }

    fn event<'t>(&self, text: &'t str, time: SystemTime) -> Event<'t> {
        Event {
            received: time,
            peer: Peer::File,
            format: self.format,
            host: self.host.clone().map(|s| &text[s]),
            program: &text[self.program.clone()],
            pid: self.pid.clone().map(|s| &text[s]),
            facility: self.facility,
            severity: self.severity,
            timestamp: self.timestamp,
            msg: &text[self.msg.clone()],
        }
    }
}

impl VerdictSpans {
    fn of(text: &str, v: Verdict<'_>) -> Option<VerdictSpans> {
        match v {
            Verdict::Miss => None,
            Verdict::Ignored { regex } => Some(VerdictSpans::Ignored { regex }),
            Verdict::Login { regex, end } => Some(VerdictSpans::Login { regex, end }),
            Verdict::Hit {
                regex,
                host,
                user,
                kind,
            } => Some(VerdictSpans::Hit {
                regex,
                host: host.map(|h| span(text, h)),
                user: user.map(|u| span(text, u)),
                kind,
            }),
        }
    }

    fn verdict<'t>(&self, text: &'t str) -> Verdict<'t> {
        match self {
            VerdictSpans::Ignored { regex } => Verdict::Ignored { regex: *regex },
            VerdictSpans::Login { regex, end } => Verdict::Login {
                regex: *regex,
                end: *end,
            },
            VerdictSpans::Hit {
                regex,
                host,
                user,
                kind,
            } => Verdict::Hit {
                regex: *regex,
                host: host.clone().map(|s| &text[s]),
                user: user.clone().map(|s| &text[s]),
                kind: *kind,
            },
        }
    }
}

fn context(reference: SystemTime) -> ParseContext {
    ParseContext {
        received: reference,
        peer: Peer::File,
        reference,
    }
}

/// Bytes of one line fetched ahead at most.
const PREFETCH_MAX: usize = 512;
/// How many matched lines ahead the applier fetches a line's text: a line
/// takes about a microsecond to apply, and the fetch a tenth of that.
const PREFETCH_AHEAD: usize = 4;

/// Starts loading `bytes` into this core's cache. Only a hint: nothing
/// waits for it, and it reads nothing the program can see.
#[inline]
fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let at = |i: usize| bytes.as_ptr().wrapping_add(i).cast::<i8>();
        for i in (0..bytes.len())
            .step_by(64)
            .chain(bytes.len().checked_sub(1))
        {
            // SAFETY: a prefetch has no architectural effect and cannot
            // fault, whatever the address; these are in bounds anyway.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(at(i)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// Non-blank lines of `text`.
fn count_lines(text: &[u8]) -> u64 {
    let mut n = 0;
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', text).chain(std::iter::once(text.len())) {
        if !text[start..end].trim_ascii().is_empty() {
            n += 1;
        }
        start = end + 1;
    }
    n
}

/// Parses, routes and filters the lines of a chunk (with a gate, only those
/// holding one of its literals).
fn match_chunk(
    matcher: &Matcher,
    gate: Option<&aho_corasick::AhoCorasick>,
    chunk: Chunk,
) -> Matched {
    let bytes = chunk.data.len() as u64;
    // Validate once per chunk; only a chunk with invalid UTF-8 is copied.
    let text = match String::from_utf8(chunk.data) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    let lines = count_lines(text.as_bytes());
    // Year-less stamps are placed near the last stamp seen. With a gate that
    // is the last matched line's (or the chunk's reference): hours apart at
    // most within a chunk, where the nearest year is the same.
    let mut reference = chunk.reference;
    let (mut hits, mut verdicts) = (chunk.hits, chunk.verdicts);
    let mut scratch: Vec<(usize, Verdict<'_>)> = Vec::new();
    let mut one = |start: usize, end: usize| {
        let line = text.get(start..end).unwrap_or_default();
        if line.trim_ascii().is_empty() {
            return;
        }
        let ev = syslog::parse(line, &context(reference));
        if let Some(t) = ev.timestamp {
            reference = t;
        }
        // An unrouted program gets no verdicts.
        scratch.clear();
        matcher.examine(&ev, &mut scratch);
        if scratch.is_empty() {
            return;
        }
        let start = verdicts.len();
        for (i, v) in scratch.drain(..) {
            if let Some(v) = VerdictSpans::of(&text, v) {
                verdicts.push((i, v));
            }
        }
        hits.push(HitLine {
            time: ev.timestamp.unwrap_or(reference),
            ev: EventSpans::of(&text, &ev),
            verdicts: start..verdicts.len(),
        });
    };
    let all = text.as_bytes();
    match gate {
        Some(ac) => {
            // Jump from literal to literal; each hit's whole line is read,
            // then the search resumes after it.
            let mut pos = 0;
            while pos < all.len() {
                let Some(m) = ac.find(aho_corasick::Input::new(all).span(pos..all.len())) else {
                    break;
                };
                let start =
                    memchr::memrchr(b'\n', &all[pos..m.start()]).map_or(pos, |i| pos + i + 1);
                let end = memchr::memchr(b'\n', &all[m.end()..]).map_or(all.len(), |i| m.end() + i);
                one(start, end);
                pos = end + 1;
            }
        }
        None => {
            // memchr's vectorised search: `str::split` finds newlines a word at a time.
            let mut start = 0;
            for end in memchr::memchr_iter(b'\n', all).chain(std::iter::once(all.len())) {
                one(start, end);
                start = end + 1;
            }
        }
    }
    Matched {
        seq: chunk.seq,
        text,
        lines,
        bytes,
        hits,
        verdicts,
    }
}

/// The time of the last stamped line of `data` (searching a few lines back).
fn last_stamp(data: &[u8], reference: SystemTime) -> Option<SystemTime> {
    data.rsplit(|b| *b == b'\n')
        .filter(|l| !l.trim_ascii().is_empty())
        .take(STAMP_SEARCH)
        .find_map(|l| syslog::parse(&syslog::decode(l), &context(reference)).timestamp)
}

/// The time of the first stamped line of `data`.
fn first_stamp(data: &[u8], reference: SystemTime) -> Option<SystemTime> {
    data.split(|b| *b == b'\n')
        .filter(|l| !l.trim_ascii().is_empty())
        .take(STAMP_SEARCH)
        .find_map(|l| syslog::parse(&syslog::decode(l), &context(reference)).timestamp)
}

/// The reference for the first chunk. Given a year, the middle of it (every
/// date of that year is closest to it). Otherwise `anchor` (the file's
/// modification time): a log ends near it, so a first line that would fall
/// in the future of it belongs to the year before.
fn initial_reference(first: &[u8], anchor: SystemTime, year: Option<i32>) -> SystemTime {
    if let Some(y) = year {
        // The middle of the year: every date of it is closer than the same
        // date a year before or after (a tie goes to the earlier year, `y`).
        let start = days_from_civil(i64::from(y), 1, 1) * 86400;
        let end = days_from_civil(i64::from(y) + 1, 1, 1) * 86400;
        let secs = (start + end) / 2;
        return if secs >= 0 {
            UNIX_EPOCH + Duration::from_secs(secs as u64)
        } else {
            UNIX_EPOCH
        };
    }
    match first_stamp(first, anchor) {
        Some(t) if t > anchor + Duration::from_secs(86400) => anchor
            .checked_sub(Duration::from_secs(365 * 86400))
            .unwrap_or(anchor),
        _ => anchor,
    }
}

/// Reads `input` into chunks cut at newlines and sends them, with their
/// year reference, to the matchers. Buffers come back through `spares` once
/// applied.
fn read_chunks<R: Read>(
    mut input: R,
    anchor: SystemTime,
    year: Option<i32>,
    tx: mpsc::SyncSender<Chunk>,
    spares: mpsc::Receiver<Spare>,
) -> io::Result<()> {
    let mut carry: Vec<u8> = Vec::new();
    let mut reference: Option<SystemTime> = None;
    let mut seq = 0;
    let mut eof = false;
    while !eof {
        let mut spare = spares.try_recv().unwrap_or_default();
        spare.hits.clear();
        spare.verdicts.clear();
        let mut data = std::mem::take(&mut spare.data);
        data.clear();
        data.reserve(CHUNK + 8192);
        data.append(&mut carry);
        let cut = loop {
            let want = (CHUNK + 4096).saturating_sub(data.len()).max(4096) as u64;
            let n = (&mut input).take(want).read_to_end(&mut data)?;
            if n == 0 {
                eof = true;
                break data.len();
            }
            if data.len() >= CHUNK {
                // A line longer than a chunk just makes the chunk longer.
                if let Some(i) = data.iter().rposition(|b| *b == b'\n') {
                    break i + 1;
                }
            }
        };
        carry.extend_from_slice(&data[cut..]);
        data.truncate(cut);
        if data.is_empty() {
            continue;
        }
        let r = *reference.get_or_insert_with(|| initial_reference(&data, anchor, year));
        if let Some(t) = last_stamp(&data, r) {
            reference = Some(t);
        }
        if tx
            .send(Chunk {
                seq,
                data,
                reference: r,
                hits: spare.hits,
                verdicts: spare.verdicts,
            })
            .is_err()
        {
            break; // the consumers are gone
        }
        seq += 1;
    }
    Ok(())
}

/// Replays `input` through the enabled jails of `settings`. `anchor` is the
/// time year-less timestamps are placed near before the first one is seen
/// (the file's modification time). `on` is called for every ban (and unban)
/// in order.
pub fn replay<R: Read + Send>(
    settings: &Settings,
    input: R,
    anchor: SystemTime,
    opts: &Options,
    mut on: impl FnMut(Happening<'_>),
) -> io::Result<Summary> {
    let started = Instant::now();
    // By default one core is left to the applier (and the reader, which
    // mostly waits on the kernel): a matcher per core fought them for it.
    let threads = opts
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() - 1))
        .max(1);
    let mut engine = Engine::new(settings, Metrics::new());
    let matcher = engine.matcher();
    // Lines without any literal a filter requires are counted, not parsed.
    let gate = engine.gate().clone();
    let mut summary = Summary {
        threads,
        ..Default::default()
    };
    let (chunk_tx, chunk_rx) = mpsc::sync_channel::<Chunk>(threads * 2);
    let chunk_rx = Arc::new(Mutex::new(chunk_rx));
    let (done_tx, done_rx) = mpsc::sync_channel::<Matched>(threads * 2);
    // Every chunk in flight at once can come back for reuse.
    let (spare_tx, spare_rx) = mpsc::sync_channel::<Spare>(threads * 4 + 2);
    let year = opts.year;
    let read_result = std::thread::scope(|s| {
        let reader = s.spawn(move || read_chunks(input, anchor, year, chunk_tx, spare_rx));
        for _ in 0..threads {
            let rx = chunk_rx.clone();
            let tx = done_tx.clone();
            let m = matcher.clone();
            let gate = gate.automaton();
            s.spawn(move || loop {
                // The lock is held only to take a chunk, not to match it.
                let next = rx.lock().map(|r| r.recv());
                let Ok(Ok(chunk)) = next else { break };
                if tx.send(match_chunk(&m, gate, chunk)).is_err() {
                    break;
                }
            });
        }
        drop(done_tx);
        // Apply in input order: matchers finish out of order.
        let mut waiting: BTreeMap<u64, Matched> = BTreeMap::new();
        let mut next = 0;
        let gate = gate.automaton();
        let mut apply_ready = |waiting: &mut BTreeMap<u64, Matched>| {
            while let Some(m) = waiting.remove(&next) {
                let t = thread_cpu();
                apply(&mut engine, &m, &mut summary, &mut on);
                summary.apply_busy += thread_cpu() - t;
                next += 1;
                // Full or gone: the buffers are simply freed.
                let _ = spare_tx.try_send(Spare {
                    data: m.text.into_bytes(),
                    hits: m.hits,
                    verdicts: m.verdicts,
                });
            }
        };
        loop {
            apply_ready(&mut waiting);
            match done_rx.try_recv() {
                Ok(m) => {
                    waiting.insert(m.seq, m);
                    continue;
                }
                Err(mpsc::TryRecvError::Disconnected) => break,
                Err(mpsc::TryRecvError::Empty) => {}
            }
            // Nothing to apply yet: rather than idle, match the oldest
            // chunk still waiting for a matcher. Applying costs less than
            // matching, so on few cores this thread would otherwise sit
            // idle a third of the time while the matchers are the bottleneck.
            let raw = chunk_rx.try_lock().ok().and_then(|r| r.try_recv().ok());
            let m = match raw {
                Some(chunk) => match_chunk(&matcher, gate, chunk),
                None => match done_rx.recv() {
                    Ok(m) => m,
                    Err(_) => break,
                },
            };
            waiting.insert(m.seq, m);
        }
        // Every matcher has finished, so every chunk is here.
        apply_ready(&mut waiting);
        reader
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the reader thread panicked")))
    });
    read_result?;
    for j in engine.jails() {
        let (bans, _) = engine.bans().totals(j.name());
        let is_recidive = matches!(j.settings.kind, JailKind::Recidive);
        if !is_recidive {
            summary.failures += j.stats.failures_total;
        }
        summary.jails.push(JailTotals {
            jail: j.name().to_string(),
            failures: j.stats.failures_total,
            bans,
            unattributed: j.stats.unattributed_total,
            ignored: j.stats.ignored_total,
        });
    }
    summary.active_at_end = engine.bans().len();
    summary.elapsed = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// CPU seconds used by the calling thread (0 where the clock is missing).
fn thread_cpu() -> f64 {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(|t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
        .unwrap_or(0.0)
}

/// Applies one matched chunk to the engine, in order, at each line's time.
fn apply(
    engine: &mut Engine,
    m: &Matched,
    summary: &mut Summary,
    on: &mut impl FnMut(Happening<'_>),
) {
    summary.lines += m.lines;
    summary.bytes += m.bytes;
    let mut verdicts: Vec<(usize, Verdict<'_>)> = Vec::new();
    for (k, h) in m.hits.iter().enumerate() {
        // The text of a matched line was last read on another core (by the
        // matcher): ask for a later line's bytes now, so they are in this
        // core's cache when its turn comes. (Building the event waited on
        // them for 4 % of replay's time.)
        if let Some(later) = m.hits.get(k + PREFETCH_AHEAD) {
            prefetch(m.text.as_bytes().get(later.ev.text()).unwrap_or_default());
        }
        summary.first.get_or_insert(h.time);
        summary.last = Some(h.time);
        engine.tick(h.time);
        report(engine, summary, on, h.time);
        let ev = h.ev.event(&m.text, h.time);
        verdicts.clear();
        verdicts.extend(
            m.verdicts[h.verdicts.clone()]
                .iter()
                .map(|(i, v)| (*i, v.verdict(&m.text))),
        );
        engine.apply(&ev, &verdicts, h.time);
        report(engine, summary, on, h.time);
    }
}

fn report(
    engine: &mut Engine,
    summary: &mut Summary,
    on: &mut impl FnMut(Happening<'_>),
    now: SystemTime,
) {
    if !engine.has_effects() {
        return;
    }
    for e in engine.take_effects() {
        match e {
            Effect::Ban(b) => {
                summary.bans += 1;
                on(Happening::Ban(&b));
            }
            Effect::Unban(b, why) => {
                summary.unbans += 1;
                let at = b
                    .expires
                    .filter(|_| why == UnbanReason::Expired)
                    .unwrap_or(now);
                on(Happening::Unban(&b, why, at));
            }
        }
    }
}

/// `2026-11-24T14:00:01Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let mut s = String::with_capacity(20);
    push_rfc3339(&mut s, t);
    s
}

/// Appends `t` as [`rfc3339`] does, without formatting machinery: replay
/// prints one such stamp per ban.
pub fn push_rfc3339(out: &mut String, t: SystemTime) {
    let secs = crate::syslog::timestamp::unix_secs(t);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86400));
    let tod = secs.rem_euclid(86400);
    if !(0..=9999).contains(&y) {
        // Outside four digits: let the formatter write the sign and width.
        use std::fmt::Write;
        let _ = write!(out, "{y:04}");
    } else {
        push_digits(out, y as u64, 4);
    }
    let fields = [
        (b'-', mo as u64),
        (b'-', d as u64),
        (b'T', (tod / 3600) as u64),
    ];
    for (sep, v) in fields {
        out.push(char::from(sep));
        push_digits(out, v, 2);
    }
    for v in [(tod / 60) % 60, tod % 60] {
        out.push(':');
        push_digits(out, v as u64, 2);
    }
    out.push('Z');
}

/// `v` in exactly `width` decimal digits (`v` must fit).
fn push_digits(out: &mut String, v: u64, width: u32) {
    for i in (0..width).rev() {
        out.push(char::from(b'0' + ((v / 10u64.pow(i)) % 10) as u8));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_round_trip_and_refuse_foreign_slices() {
        let text = String::from("abc def");
        assert_eq!(span(&text, &text[4..]), 4..7);
        assert_eq!(span(&text, ""), 0..0);
        assert_eq!(span(&text, "elsewhere"), 0..0);
    }

    #[test]
    fn the_prefetched_text_is_the_line_of_the_fields() {
        let ctx = context(UNIX_EPOCH);
        let long = format!("Jan  1 00:00:00 h sshd[1]: {}", "x".repeat(2000));
        let text = format!("junk\nJan  1 00:00:00 gw sshd[7]: Failed\n{long}\nno tag here\n");
        let lines: Vec<&str> = text.lines().collect();
        let spans: Vec<Span> = lines
            .iter()
            .map(|l| EventSpans::of(&text, &syslog::parse(l, &ctx)).text())
            .collect();
        // From the host to the end of the message; capped for a long line.
        assert_eq!(&text[spans[1].clone()], "gw sshd[7]: Failed");
        assert_eq!(spans[2].len(), PREFETCH_MAX);
        assert!(text[spans[2].clone()].starts_with("h sshd[1]: x"));
        // An unparsed line has no program: its message is the line.
        assert_eq!(&text[spans[3].clone()], "no tag here");
        // Prefetching any of it (or nothing) is harmless.
        for s in spans {
            prefetch(&text.as_bytes()[s]);
        }
        prefetch(&[]);
    }

    #[test]
    fn chunks_never_split_a_line_and_carry_the_year() {
        // Lines across many chunks; every chunk ends with a newline.
        let mut input = String::new();
        for i in 0..200_000 {
            input.push_str(&format!(
                "<38>Dec 31 23:59:59 sshd[{i}]: Failed password for root from 192.0.2.1 port 1 ssh2\n"
            ));
        }
        input.push_str("<38>Jan  1 00:00:01 sshd[1]: x\n");
        let (tx, rx) = mpsc::sync_channel(1000);
        let anchor = UNIX_EPOCH + Duration::from_secs(days_from_civil(2026, 12, 31) as u64 * 86400);
        let (_spare_tx, spare_rx) = mpsc::sync_channel(1);
        read_chunks(input.as_bytes(), anchor, None, tx, spare_rx).unwrap();
        let chunks: Vec<Chunk> = rx.iter().collect();
        assert!(chunks.len() > 2, "{}", chunks.len());
        let total: usize = chunks.iter().map(|c| c.data.len()).sum();
        assert_eq!(total, input.len());
        for c in &chunks {
            assert_eq!(c.data.last(), Some(&b'\n'));
            assert!(rfc3339(c.reference).starts_with("2026-12-31"));
        }
    }

    #[test]
    fn initial_reference_keeps_the_first_line_in_the_past() {
        // A log written Feb → Nov, read with mtime in November: "Feb" is this year.
        let anchor = UNIX_EPOCH + Duration::from_secs(days_from_civil(2026, 11, 20) as u64 * 86400);
        let r = initial_reference(b"Feb  1 00:00:00 sshd[1]: x\n", anchor, None);
        let t = first_stamp(b"Feb  1 00:00:00 sshd[1]: x\n", r).unwrap();
        assert!(rfc3339(t).starts_with("2026-02-01"), "{}", rfc3339(t));
        for (line, year, want) in [
            ("Feb  1 00:00:00 sshd[1]: x", 2019, "2019-02-01T00:00:00Z"),
            ("Dec 31 23:59:59 sshd[1]: x", 2026, "2026-12-31T23:59:59Z"),
            ("Jan  1 00:00:00 sshd[1]: x", 2026, "2026-01-01T00:00:00Z"),
            ("Dec 31 23:59:59 sshd[1]: x", 2024, "2024-12-31T23:59:59Z"),
            ("Jan  1 00:00:00 sshd[1]: x", 2024, "2024-01-01T00:00:00Z"),
        ] {
            let r = initial_reference(line.as_bytes(), anchor, Some(year));
            let t = first_stamp(line.as_bytes(), r).unwrap();
            assert_eq!(rfc3339(t), want);
        }
    }

    #[test]
    fn rfc3339_formats() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        // The hand-written digits agree with the formatter's.
        for secs in [
            0u64,
            59,
            3599,
            86399,
            951_782_400,
            4_102_444_799,
            253_402_300_799,
        ] {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            let s = crate::syslog::timestamp::unix_secs(t);
            let (y, mo, d) = civil_from_days(s.div_euclid(86400));
            let tod = s.rem_euclid(86400);
            let want = format!(
                "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
                tod / 3600,
                (tod / 60) % 60,
                tod % 60
            );
            assert_eq!(rfc3339(t), want);
        }
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_528_801)),
            "2026-11-24T14:00:01Z"
        );
    }
}
