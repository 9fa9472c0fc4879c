//! The `log` backend: records what would be done, touches nothing. This is
//! what `run --dry-run` forces for every jail.

use super::{ActionError, Backend, Family, JailAction, Op, Request};

/// Logs each ban and unban at info level.
pub struct LogBackend;

impl Backend for LogBackend {
    fn kind(&self) -> &'static str {
        "log"
    }

    fn start(&mut self, action: &JailAction, family: Family) -> Result<(), ActionError> {
        tracing::debug!(jail = %action.jail, ?family, "log action start");
        Ok(())
    }

    fn apply(&mut self, batch: &[Request]) -> Result<(), ActionError> {
        for r in batch {
            let b = &r.ban;
            match r.op {
                Op::Ban => tracing::debug!(
                    jail = %b.jail,
                    action = %r.action.name,
                    ip = %b.ip,
                    bantime = %b.bantime,
                    failures = b.failures,
                    ban_count = b.ban_count,
                    "ban (log action)"
                ),
                Op::Unban => tracing::debug!(
                    jail = %b.jail,
                    action = %r.action.name,
                    ip = %b.ip,
                    "unban (log action)"
                ),
            }
        }
        Ok(())
    }

    fn stop(&mut self, action: &JailAction, family: Family) -> Result<(), ActionError> {
        tracing::debug!(jail = %action.jail, ?family, "log action stop");
        Ok(())
    }
}
