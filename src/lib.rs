//! banstream: a syslog receiver that bans attackers in-stream.
//!
//! The modules follow the data flow, one direction, no back and forth:
//!
//! 1. [`ingest`]: sockets (UDP, TCP, unix), RFC 6587 framing, limits, peer
//!    allowlists → raw frames with peer and receive time;
//! 2. [`syslog`]: bytes → [`syslog::Event`] (RFC 5424, RFC 3164, BusyBox/musl);
//! 3. [`router`]: program → the jails subscribed to it;
//! 4. [`jail`] with [`filter`]: failregex / ignoreregex → address → ignore
//!    list → sliding-window count;
//! 5. [`ban`]: ban decisions, ban-time policy, expiry — the one owner of ban state;
//! 6. [`action`]: firewall backends behind one trait, batched on their own threads;
//!    [`notify`] drives the `mail` and `webhook` actions (digests, delivery).
//! 7. [`store`]: the embedded SQLite database, on its own thread: bans in
//!    force, ban history and the ban log, restored at start.
//!
//! [`engine`] runs stages 2–5 synchronously for one event (shared by the
//! daemon and `replay`), after its line gate has skipped lines holding none
//! of the literals the filters require; [`daemon`] wires everything with channels;
//! [`control`] and [`http`] observe it; [`telemetry`] logs and counts;
//! [`config`] reads the TOML layers (and an existing fail2ban tree) into
//! runtime settings; [`service`] sets up logging and drops root before any
//! of it starts; [`tools`] are `test-filter` and `replay`, and [`cli`]
//! prints what the commands show.

pub mod action;
pub mod addr;
pub mod ban;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod engine;
pub mod filter;
pub mod http;
pub mod ingest;
pub mod jail;
pub mod notify;
pub mod router;
pub mod service;
pub mod store;
pub mod syslog;
pub mod telemetry;
pub mod tools;
