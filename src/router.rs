//! Stage 3: program → jails. An index, nothing else: an event only reaches
//! the jails subscribed to its program, found with one hash lookup, so a
//! line from cron costs no regex at all.

use std::collections::HashMap;

/// The routing table.
#[derive(Debug, Default, Clone)]
pub struct Router {
    by_program: HashMap<Box<str>, Vec<usize>>,
    /// Jails that read every program (filters not anchored to one).
    every: Vec<usize>,
}

impl Router {
    /// Builds the table from each jail's program list (index = jail index).
    /// An empty list subscribes the jail to every program; `None` to none.
    pub fn new<'a>(jails: impl IntoIterator<Item = Option<&'a [String]>>) -> Router {
        let mut r = Router::default();
        for (i, programs) in jails.into_iter().enumerate() {
            let Some(programs) = programs else { continue };
            if programs.is_empty() {
                r.every.push(i);
                continue;
            }
            for p in programs {
                let v = r.by_program.entry(p.as_str().into()).or_default();
                if !v.contains(&i) {
                    v.push(i);
                }
            }
        }
        r
    }

    /// Calls `f` with each jail index subscribed to `program`.
    pub fn for_each(&self, program: &str, mut f: impl FnMut(usize)) {
        if program.is_empty() {
            // A line with no program cannot be attributed to a daemon.
            return;
        }
        if let Some(v) = self.by_program.get(program) {
            v.iter().copied().for_each(&mut f);
        }
        self.every.iter().copied().for_each(f);
    }

    /// Whether any jail could be interested in `program`.
    pub fn routes(&self, program: &str) -> bool {
        !program.is_empty() && (!self.every.is_empty() || self.by_program.contains_key(program))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_program_only() {
        let j0 = vec!["sshd".to_string(), "sshd-session".to_string()];
        let j1 = vec!["named".to_string()];
        let r = Router::new([Some(j0.as_slice()), None, Some(j1.as_slice())]);
        let mut hits = Vec::new();
        r.for_each("sshd-session", |i| hits.push(i));
        r.for_each("named", |i| hits.push(i));
        r.for_each("cron", |i| hits.push(i));
        r.for_each("", |i| hits.push(i));
        assert_eq!(hits, vec![0, 2]);
        assert!(!r.routes("cron"));
    }

    #[test]
    fn unanchored_jails_see_every_program_but_not_empty_ones() {
        let any: Vec<String> = vec![];
        let r = Router::new([Some(any.as_slice())]);
        let mut n = 0;
        r.for_each("whatever", |_| n += 1);
        r.for_each("", |_| n += 1);
        assert_eq!(n, 1);
    }
}
