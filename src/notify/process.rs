//! Running a helper program (sendmail, whois) as an argv vector with a
//! deadline and bounded output: a hung MTA or whois server costs at most the
//! timeout, and a program that prints megabytes costs at most the budget.

use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What a finished program left.
#[derive(Debug)]
pub struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// Its standard output, up to the budget.
    pub stdout: Vec<u8>,
    /// Its standard error, up to 4 KiB.
    pub stderr: Vec<u8>,
}

/// Why a program did not finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// It could not be started (not found, not executable).
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// It ran past its deadline and was killed.
    #[error("{program} did not finish within {timeout:?}; killed")]
    Timeout {
        /// The program.
        program: String,
        /// The deadline it had.
        timeout: Duration,
    },
    /// Waiting for it failed.
    #[error("waiting for {program}: {source}")]
    Wait {
        /// The program.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
}

fn reader(mut r: impl Read + Send + 'static, budget: usize) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    // If no thread can be started, the channel closes and reads as no output.
    let _ = std::thread::Builder::new()
        .name("notify-pipe".into())
        .spawn(move || {
            let mut out = Vec::new();
            // Read at most the budget, then close the pipe: a program that
            // keeps writing gets EPIPE instead of filling our memory.
            let _ = r.by_ref().take(budget as u64).read_to_end(&mut out);
            let _ = tx.send(out);
        });
    rx
}

/// Runs `cmd` with `input` on its standard input, for at most `timeout`,
/// keeping at most `budget` bytes of its standard output.
pub fn run(
    cmd: &mut Command,
    input: Option<Vec<u8>>,
    timeout: Duration,
    budget: usize,
) -> Result<Finished, RunError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| RunError::Spawn {
        program: program.clone(),
        source,
    })?;
    if let (Some(mut stdin), Some(data)) = (child.stdin.take(), input) {
        // A writer thread, so a program that does not read cannot block us
        // past the deadline (killing it ends the write with EPIPE).
        let _ = std::thread::Builder::new()
            .name("notify-stdin".into())
            .spawn(move || {
                let _ = stdin.write_all(&data);
            });
    }
    let out = child.stdout.take().map(|s| reader(s, budget));
    let err = child.stderr.take().map(|s| reader(s, 4096));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RunError::Timeout { program, timeout });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(source) => {
                let _ = child.kill();
                return Err(RunError::Wait { program, source });
            }
        }
    };
    // A grandchild may hold the pipes open: never wait long for them.
    let collect = |rx: Option<mpsc::Receiver<Vec<u8>>>| {
        rx.and_then(|r| r.recv_timeout(Duration::from_secs(1)).ok())
            .unwrap_or_default()
    };
    Ok(Finished {
        status,
        stdout: collect(out),
        stderr: collect(err),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_output_and_budget() {
        let f = run(
            Command::new("cat").arg("-"),
            Some(b"hello world".to_vec()),
            Duration::from_secs(10),
            5,
        )
        .unwrap();
        assert!(f.status.success());
        assert_eq!(f.stdout, b"hello");
    }

    #[test]
    fn a_hung_program_is_killed_at_the_deadline() {
        let t = Instant::now();
        let e = run(
            Command::new("sleep").arg("30"),
            None,
            Duration::from_millis(200),
            10,
        )
        .unwrap_err();
        assert!(matches!(e, RunError::Timeout { .. }), "{e}");
        assert!(t.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let e = run(
            &mut Command::new("/nonexistent/banstream-test-sendmail"),
            None,
            Duration::from_secs(1),
            10,
        )
        .unwrap_err();
        assert!(matches!(e, RunError::Spawn { .. }), "{e}");
    }
}
