//! Restore at start: open a database holding 100,000 bans in force (with
//! their history and ban log), read it, and put every ban back into the
//! engine as effects for the firewall. Also the cost of one durable commit,
//! which bounds how soon an in-stream ban is on disk.
//!
//! `cargo bench --bench restore` (figures in BENCHMARKS.md).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};

use banstream::ban::{Ban, BanOrigin, Effect};
use banstream::config::{self, LoadOptions, TimeSpec};
use banstream::engine::Engine;
use banstream::jail::JailName;
use banstream::store::Store;
use banstream::telemetry::Metrics;

const BANS: u32 = 100_000;

fn settings(dir: &Path) -> config::Settings {
    let file = dir.join("bench.toml");
    std::fs::write(
        &file,
        "[jail.sshd]\nenabled = true\n[jail.recidive]\nenabled = true\nbantime = \"8d\"\nfindtime = \"1d\"\n",
    )
    .unwrap();
    let loaded = config::load(&LoadOptions {
        file: Some(file),
        env: false,
    })
    .unwrap();
    let mut s = config::resolve::resolve(&loaded).unwrap();
    s.force_dry_run();
    s
}

fn sync(store: &Store) {
    let (tx, rx) = mpsc::channel();
    store.sync(Box::new(move |r| {
        let _ = tx.send(r);
    }));
    rx.recv().unwrap().unwrap();
}

/// A database with `BANS` week-long sshd bans of distinct addresses.
fn populate(path: &Path, now: SystemTime) {
    let (store, _) = Store::open(path, now, now, Metrics::new()).unwrap();
    let jail = JailName::new("sshd").unwrap();
    for i in 0..BANS {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i));
        let week = Duration::from_secs(7 * 86400);
        store.record(
            &Effect::Ban(Arc::new(Ban {
                jail: jail.clone(),
                ip,
                start: now,
                bantime: TimeSpec::Finite(week),
                expires: Some(now + week),
                failures: 3,
                ban_count: 1,
                origin: BanOrigin::Stream,
            })),
            now,
        );
    }
    sync(&store);
    store.close();
}

fn restore(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bans.sqlite3");
    let now = SystemTime::now();
    populate(&path, now);
    let settings = settings(dir.path());
    let mut g = c.benchmark_group("restore");
    g.sample_size(10);
    g.bench_function("open_and_restore_100k_bans", |b| {
        b.iter(|| {
            let since = now - Duration::from_secs(86400);
            let (store, snap) = Store::open(&path, now, since, Metrics::new()).unwrap();
            assert_eq!(snap.bans.len(), BANS as usize);
            let mut engine = Engine::new(&settings, Metrics::new());
            for (j, ip, h) in snap.history {
                engine.load_history(&j, ip, h);
            }
            let (restored, _) = engine.restore(snap.bans, now);
            engine.rebuild_recidive(&snap.ban_log, now);
            assert_eq!(engine.take_effects().len(), restored.len());
            store.close();
        })
    });
    g.finish();
}

fn commit(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bans.sqlite3");
    let now = SystemTime::now();
    let (store, _) = Store::open(&path, now, now, Metrics::new()).unwrap();
    let jail = JailName::new("sshd").unwrap();
    let mut n: u32 = 0;
    let mut g = c.benchmark_group("store");
    g.bench_function("durable_commit_of_one_ban", |b| {
        b.iter(|| {
            n += 1;
            store.record(
                &Effect::Ban(Arc::new(Ban {
                    jail: jail.clone(),
                    ip: IpAddr::V4(Ipv4Addr::from(0x0c00_0000 + n)),
                    start: now,
                    bantime: TimeSpec::Forever,
                    expires: None,
                    failures: 3,
                    ban_count: 1,
                    origin: BanOrigin::Stream,
                })),
                now,
            );
            sync(&store);
        })
    });
    g.finish();
    store.close();
}

criterion_group!(benches, restore, commit);
criterion_main!(benches);
