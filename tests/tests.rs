//! The one integration-test binary (one link on a 2-core machine). Modules
//! by feature; tests named after what they guard.

mod common;

mod cli;
mod deploy;
mod fail2ban;
mod firewall;
mod ingest;
mod injection;
mod netns;
mod notify;
mod persistence;
mod senders;
mod tools;
