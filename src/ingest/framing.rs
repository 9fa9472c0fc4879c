//! RFC 6587 framing for stream transports, as an explicit state machine.
//!
//! A frame starting with a non-zero digit is octet-counted (`LEN SP MSG`),
//! anything else runs to the next LF (non-transparent framing). The first
//! frame of a connection decides for the rest of it when it is LF-framed:
//! on such a connection a line starting with digits is a line, because an
//! LF that got into a relayed message would otherwise let its sender close
//! the connection (`2026-...`) or make it skip up to a gigabyte of the
//! traffic behind (`999999999 `). A connection that starts octet-counted
//! may still mix in LF frames. The framer never gets stuck:
//! - a frame longer than `max_frame` is skipped to its end (counted bytes for
//!   octet counting, the next LF otherwise) and reported once as
//!   [`Framed::Oversize`];
//! - a length that is not a number followed by a space, or is absurd, is a
//!   [`FramingError::BadOctetCount`]: the stream cannot be resynchronised and
//!   the caller closes the connection.

use bytes::{Buf, Bytes, BytesMut};
use memchr::memchr;
use tokio_util::codec::Decoder;

/// What the framer yields.
#[derive(Debug, PartialEq, Eq)]
pub enum Framed {
    /// One message.
    Frame(Bytes),
    /// A frame of this many bytes was too long and is being (or was) skipped.
    Oversize(usize),
}

/// A framing error.
#[derive(Debug, thiserror::Error)]
pub enum FramingError {
    /// The octet count was not digits followed by a space, or too large.
    #[error("bad octet count: {0}")]
    BadOctetCount(String),
    /// The connection failed.
    #[error("read error: {0}")]
    Io(#[from] std::io::Error),
}

impl FramingError {
    /// Whether the stream can go on after this error.
    pub fn can_continue(&self) -> bool {
        false
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At a frame boundary.
    Start,
    /// Skipping the rest of an oversize octet-counted frame.
    Discarding(usize),
    /// Skipping an oversize LF frame up to its LF.
    DiscardingLine,
}

/// The framer for one connection.
#[derive(Debug)]
pub struct SyslogFramer {
    max_frame: usize,
    state: State,
    /// What the first frame was: `Some(true)` LF-framed, for good.
    lf_only: Option<bool>,
}

/// Octet counts are at most this many digits (a 1 GB frame is already absurd).
const MAX_DIGITS: usize = 9;

impl SyslogFramer {
    /// A framer accepting frames up to `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        SyslogFramer {
            max_frame,
            state: State::Start,
            lf_only: None,
        }
    }
}

impl Decoder for SyslogFramer {
    type Item = Framed;
    type Error = FramingError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Framed>, FramingError> {
        loop {
            match self.state {
                State::Discarding(n) => {
                    let k = n.min(buf.len());
                    buf.advance(k);
                    if k == n {
                        self.state = State::Start;
                        continue;
                    }
                    self.state = State::Discarding(n - k);
                    return Ok(None);
                }
                State::DiscardingLine => match memchr(b'\n', buf) {
                    Some(i) => {
                        buf.advance(i + 1);
                        self.state = State::Start;
                        continue;
                    }
                    None => {
                        buf.clear();
                        return Ok(None);
                    }
                },
                State::Start => {
                    // Stray separators between frames (a trailing LF after an
                    // octet-counted frame, CRLF, NUL) are skipped.
                    let skip = buf
                        .iter()
                        .take_while(|b| matches!(b, b'\n' | b'\r' | b'\0'))
                        .count();
                    buf.advance(skip);
                    let Some(&first) = buf.first() else {
                        return Ok(None);
                    };
                    let counted = (b'1'..=b'9').contains(&first);
                    let lf_only = *self.lf_only.get_or_insert(!counted);
                    if counted && !lf_only {
                        return self.octet_counted(buf);
                    }
                    return Ok(self.lf_framed(buf));
                }
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Framed>, FramingError> {
        if let Some(f) = self.decode(buf)? {
            return Ok(Some(f));
        }
        // A last LF frame without its LF is still a message.
        let counted = |b: &u8| (b'1'..=b'9').contains(b) && self.lf_only != Some(true);
        if self.state == State::Start && buf.first().is_some_and(|b| !counted(b)) {
            let data = buf.split().freeze();
            return Ok(Some(Framed::Frame(trim_eol(data))));
        }
        buf.clear();
        Ok(None)
    }
}

impl SyslogFramer {
    fn octet_counted(&mut self, buf: &mut BytesMut) -> Result<Option<Framed>, FramingError> {
        let digits = buf.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits > MAX_DIGITS {
            return Err(FramingError::BadOctetCount(format!(
                "more than {MAX_DIGITS} digits"
            )));
        }
        if digits == buf.len() {
            return Ok(None); // need the rest of the count
        }
        if buf[digits] != b' ' {
            let shown = String::from_utf8_lossy(&buf[..(digits + 1).min(buf.len())]).into_owned();
            return Err(FramingError::BadOctetCount(format!(
                "{shown:?} is not LEN followed by a space"
            )));
        }
        // At most MAX_DIGITS ASCII digits: this cannot overflow.
        let len = buf[..digits]
            .iter()
            .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
        let header = digits + 1;
        if len > self.max_frame {
            buf.advance(header);
            self.state = State::Discarding(len);
            return Ok(Some(Framed::Oversize(len)));
        }
        if buf.len() < header + len {
            buf.reserve(header + len - buf.len());
            return Ok(None);
        }
        buf.advance(header);
        let data = buf.split_to(len).freeze();
        Ok(Some(Framed::Frame(trim_eol(data))))
    }

    fn lf_framed(&mut self, buf: &mut BytesMut) -> Option<Framed> {
        let window = &buf[..buf.len().min(self.max_frame + 1)];
        match memchr(b'\n', window) {
            Some(i) => {
                let data = buf.split_to(i + 1).freeze();
                Some(Framed::Frame(trim_eol(data)))
            }
            None if buf.len() > self.max_frame => {
                // The oversize line's own LF may already be here, and
                // whole frames behind it: skip only the line.
                let rest = &buf[self.max_frame + 1..];
                if let Some(i) = memchr(b'\n', rest) {
                    let n = self.max_frame + 1 + i + 1;
                    buf.advance(n);
                    return Some(Framed::Oversize(n));
                }
                let n = buf.len();
                buf.clear();
                self.state = State::DiscardingLine;
                Some(Framed::Oversize(n))
            }
            None => None,
        }
    }
}

fn trim_eol(mut data: Bytes) -> Bytes {
    while matches!(data.last(), Some(b'\n' | b'\r' | b'\0')) {
        data.truncate(data.len() - 1);
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(max: usize, chunks: &[&[u8]]) -> (Vec<Framed>, Option<String>) {
        let mut f = SyslogFramer::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for c in chunks {
            buf.extend_from_slice(c);
            loop {
                match f.decode(&mut buf) {
                    Ok(Some(x)) => out.push(x),
                    Ok(None) => break,
                    Err(e) => return (out, Some(e.to_string())),
                }
            }
        }
        while let Ok(Some(x)) = f.decode_eof(&mut buf) {
            out.push(x);
        }
        (out, None)
    }

    fn frame(s: &str) -> Framed {
        Framed::Frame(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn octet_counted_and_lf_mixed_across_chunks() {
        let (out, err) = run(100, &[b"5 hel", b"lo<13>a\n", b"3 abc", b"<13>tail"]);
        assert!(err.is_none());
        assert_eq!(
            out,
            vec![
                frame("hello"),
                frame("<13>a"),
                frame("abc"),
                frame("<13>tail")
            ]
        );
    }

    #[test]
    fn crlf_and_blank_lines() {
        let (out, _) = run(100, &[b"a\r\n\r\n\nb\n"]);
        assert_eq!(out, vec![frame("a"), frame("b")]);
    }

    #[test]
    fn oversize_octet_frame_is_skipped_to_its_end() {
        let mut input = b"20 ".to_vec();
        input.extend_from_slice(&[b'x'; 20]);
        input.extend_from_slice(b"2 ok");
        let (out, err) = run(10, &[&input[..7], &input[7..]]);
        assert!(err.is_none());
        assert_eq!(out, vec![Framed::Oversize(20), frame("ok")]);
    }

    #[test]
    fn oversize_lf_frame_is_skipped_to_its_lf() {
        let mut input = vec![b'y'; 50];
        input.extend_from_slice(b"\n<13>next\n");
        let (out, _) = run(10, &[&input[..20], &input[20..]]);
        assert_eq!(out, vec![Framed::Oversize(20), frame("<13>next")]);
    }

    #[test]
    fn frames_read_with_an_oversize_line_survive_it() {
        let mut input = vec![b'y'; 50];
        input.extend_from_slice(b"\n<13>good1\n<13>good2\n");
        let (out, err) = run(10, &[&input, b"<13>good3\n<13>good4\n"]);
        assert_eq!(err, None);
        assert_eq!(
            out,
            vec![
                Framed::Oversize(51),
                frame("<13>good1"),
                frame("<13>good2"),
                frame("<13>good3"),
                frame("<13>good4"),
            ]
        );
    }

    #[test]
    fn on_an_lf_framed_connection_digits_start_a_line_not_a_count() {
        let (out, err) = run(
            100,
            &[b"<13>a\n2026-11-24T14:00:01Z h sshd[1]: x\n999999999 y\n<13>b\n17"],
        );
        assert_eq!(err, None);
        assert_eq!(
            out,
            vec![
                frame("<13>a"),
                frame("2026-11-24T14:00:01Z h sshd[1]: x"),
                frame("999999999 y"),
                frame("<13>b"),
                // The last line, without its LF, at the end of the stream.
                frame("17"),
            ]
        );
    }

    #[test]
    fn bogus_counts_close_the_stream() {
        assert!(run(100, &[b"12x hello"]).1.is_some());
        assert!(run(100, &[b"99999999999 x"]).1.is_some());
    }

    #[test]
    fn garbage_never_loops() {
        let garbage: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let (out, _) = run(64, &[&garbage]);
        assert!(out.len() < 5000);
    }
}
