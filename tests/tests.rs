//! The one integration-test binary (one link on a 2-core machine). Modules
//! by feature; tests named after what they guard.

mod common;

mod cli;
mod fail2ban;
mod ingest;
mod injection;
