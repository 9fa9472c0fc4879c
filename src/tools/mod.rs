//! Operator tools that run without the daemon: `test-filter` and `replay`.

pub mod test_filter;
