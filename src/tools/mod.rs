//! Operator tools that run without the daemon: `test-filter` (one filter
//! over lines, as the daemon would match them) and `replay` (the whole
//! configuration over a log file, message timestamps as the clock).

pub mod replay;
pub mod test_filter;
