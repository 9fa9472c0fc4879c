//! Running as a system service: what happens between reading the
//! configuration and starting the pipeline, outside the data flow.
//!
//! - [`logging`]: banstream's own log lines, to stderr (captured by
//!   supervise-daemon) or to the local syslog socket, never blocking and
//!   tagged so they cannot loop back into banstream's own input;
//! - [`instance`]: one daemon per control socket and per database, and
//!   one editing each network namespace's firewall, held with `flock`
//!   before anything else is touched;
//! - [`privileges`]: started as root, give the runtime and state
//!   directories to a dedicated user and drop to it, keeping only the
//!   capabilities the listeners and firewall commands need.
//!
//! Both run in `main` before the async runtime starts: capabilities are
//! per thread on Linux, so the drop must happen while the process has one
//! thread, and every thread started later inherits the reduced sets.

pub mod instance;
pub mod logging;
pub mod privileges;
