//! Running firewall programs: argv vectors only (never a shell), optional
//! stdin (for `nft -f -`, `iptables-restore`, `ipset restore`), a time
//! limit, and errors that carry the command and its stderr so the log line
//! says what failed and why.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::ActionError;

/// How long one firewall command may run before it is killed (fail2ban's
/// default `timeout` is 60 s too). A hung `iptables -w` waiting for the
/// xtables lock must not stall a backend's thread forever.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// What a command printed.
#[derive(Debug, Default)]
pub struct Ran {
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// A command that ran and failed (or could not run).
#[derive(Debug)]
pub struct Failed {
    /// The command, quoted for a human.
    pub command: String,
    /// Exit code (`None`: killed, timed out or not started).
    pub code: Option<i32>,
    /// Its standard error, or why it did not run.
    pub stderr: String,
}

impl Failed {
    /// Turns the failure into a backend error.
    pub fn into_error(self, backend: &str) -> ActionError {
        let code = self
            .code
            .map_or_else(|| "did not complete".to_string(), |c| format!("exit {c}"));
        ActionError {
            backend: backend.to_string(),
            message: format!("`{}` failed ({code}): {}", self.command, self.stderr.trim()),
        }
    }
}

/// Quotes argv for messages (not for execution: nothing here is run by a shell).
pub fn display(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,@+%".contains(&b))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `argv` with `stdin` fed to it, waits at most `timeout`, and returns
/// its output when it exits 0.
pub fn run(argv: &[String], stdin: Option<&[u8]>, timeout: Duration) -> Result<Ran, Failed> {
    let fail = |code, stderr: String| Failed {
        command: display(argv),
        code,
        stderr,
    };
    let Some((prog, args)) = argv.split_first() else {
        return Err(fail(None, "empty command".into()));
    };
    let mut child = Command::new(prog)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(None, format!("cannot run {prog}: {e}")))?;
    let pid = child.id();
    // Feed stdin, drain stdout and stderr, and wait, on a helper thread, so
    // a large script cannot deadlock against a full pipe and a hung command
    // can be killed when the time is up.
    let input = stdin.map(<[u8]>::to_vec);
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("action-cmd".into())
        .spawn(move || {
            let mut child_in = child.stdin.take();
            let writer = input.and_then(|data| {
                let mut w = child_in.take()?;
                std::thread::Builder::new()
                    .name("action-stdin".into())
                    .spawn(move || {
                        // A command that exits early closes the pipe: its
                        // exit status tells what went wrong, not EPIPE.
                        let _ = w.write_all(&data);
                    })
                    .ok()
            });
            drop(child_in);
            let mut err = String::new();
            let errh = child.stderr.take().and_then(|mut e| {
                std::thread::Builder::new()
                    .name("action-stderr".into())
                    .spawn(move || {
                        let mut s = Vec::new();
                        let _ = e.read_to_end(&mut s);
                        String::from_utf8_lossy(&s).into_owned()
                    })
                    .ok()
            });
            let mut out = Vec::new();
            if let Some(mut o) = child.stdout.take() {
                let _ = o.read_to_end(&mut out);
            }
            if let Some(h) = errh {
                err = h.join().unwrap_or_default();
            }
            if let Some(w) = writer {
                let _ = w.join();
            }
            let status = child.wait();
            let _ = tx.send((status, String::from_utf8_lossy(&out).into_owned(), err));
        });
    if let Err(e) = spawned {
        return Err(fail(None, format!("cannot start helper thread: {e}")));
    }
    match rx.recv_timeout(timeout) {
        Ok((Ok(st), stdout, stderr)) if st.success() => Ok(Ran { stdout, stderr }),
        Ok((Ok(st), _, stderr)) => Err(fail(st.code(), stderr)),
        Ok((Err(e), _, _)) => Err(fail(None, format!("wait failed: {e}"))),
        Err(_) => {
            // The child is not reaped until the helper's wait() returns, so
            // its pid cannot have been reused yet.
            if let Ok(p) = i32::try_from(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            Err(fail(
                None,
                format!("timed out after {timeout:?} and was killed"),
            ))
        }
    }
}

/// [`run`] with the default time limit, mapping failure to a backend error.
pub fn run_for(backend: &str, argv: &[String], stdin: Option<&[u8]>) -> Result<Ran, ActionError> {
    run(argv, stdin, COMMAND_TIMEOUT).map_err(|f| f.into_error(backend))
}

/// Builds an argv vector from string slices.
pub fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| (*s).to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_stdin_and_failures() {
        let r = run(&argv(&["cat"]), Some(b"hello"), COMMAND_TIMEOUT).unwrap();
        assert_eq!(r.stdout, "hello");
        let f = run(
            &argv(&["sh", "-c", "echo oops >&2; exit 3"]),
            None,
            COMMAND_TIMEOUT,
        )
        .unwrap_err();
        assert_eq!(f.code, Some(3));
        assert_eq!(f.stderr.trim(), "oops");
        let e = f.into_error("x").to_string();
        assert!(
            e.contains("exit 3") && e.contains("oops") && e.contains("sh -c"),
            "{e}"
        );
        assert!(run(&argv(&["/nonexistent/prog"]), None, COMMAND_TIMEOUT).is_err());
    }

    #[test]
    fn a_hung_command_is_killed() {
        let t = std::time::Instant::now();
        let f = run(&argv(&["sleep", "30"]), None, Duration::from_millis(200)).unwrap_err();
        assert!(f.stderr.contains("timed out"), "{f:?}");
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn big_stdin_does_not_deadlock() {
        let data = vec![b'x'; 4 << 20];
        let r = run(&argv(&["wc", "-c"]), Some(&data), COMMAND_TIMEOUT).unwrap();
        assert_eq!(r.stdout.trim(), (4 << 20).to_string());
    }
}
