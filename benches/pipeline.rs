//! Criterion benchmarks for each stage of the pipeline: syslog parsing,
//! routing + filters, the window counter and the ban manager.
//!
//! `cargo bench --bench pipeline`; figures go to BENCHMARKS.md.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use banstream::ban::policy::BanTimePolicy;
use banstream::ban::{BanManager, BanOrigin, BanRequest};
use banstream::config::{self, LoadOptions};
use banstream::engine::Engine;
use banstream::filter::{builtin, NamedOptions};
use banstream::jail::window::WindowCounter;
use banstream::jail::JailName;
use banstream::syslog::{self, ParseContext, Peer};
use banstream::telemetry::Metrics;

const LINES: &[&str] = &[
    "<38>Nov 24 14:00:01 sshd[2211]: Failed password for root from 203.0.113.9 port 4711 ssh2",
    "<78>Nov 24 14:00:01 crond[3929]: USER root pid 3930 cmd run-parts /etc/periodic/15min",
    "<4>Nov 24 14:00:01 kernel: [50400.642142] [UFW BLOCK] IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC=198.18.6.248 DST=203.0.113.1 LEN=44 TOS=0x00 PREC=0x00 TTL=242 ID=54321 PROTO=TCP SPT=16308 DPT=8080 WINDOW=1024 RES=0x00 SYN URGP=0",
    "Nov 24 14:00:01 web1 sshd-session[29501]: Accepted publickey for git from 10.0.1.159 port 38817 ssh2: ED25519 SHA256:q2Xw5cK1nVbq5YpP0l5JqM6h8W2s9xRzT4uA7bC3dE0",
    "<38>1 2026-11-24T14:00:01.123456+00:00 web1 sshd 2211 - - Failed password for root from 203.0.113.9 port 4711 ssh2",
];

fn ctx() -> ParseContext {
    let t = UNIX_EPOCH + Duration::from_secs(1_795_528_800);
    ParseContext::live(Peer::File, t)
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("syslog_parse");
    let ctx = ctx();
    for (name, line) in [
        "bsd_sshd",
        "bsd_cron",
        "bsd_ufw",
        "file_accepted",
        "rfc5424",
    ]
    .iter()
    .zip(LINES)
    {
        g.throughput(Throughput::Bytes(line.len() as u64));
        g.bench_function(*name, |b| {
            b.iter(|| black_box(syslog::parse(black_box(line), &ctx)))
        });
    }
    g.finish();
}

fn filters(c: &mut Criterion) {
    let mut g = c.benchmark_group("filter");
    let f = builtin::load(&NamedOptions::parse("sshd[mode=aggressive]").unwrap(), &[]).unwrap();
    let hit = "Failed password for invalid user admin from 203.0.113.9 port 4711 ssh2";
    let miss = "Accepted publickey for git from 10.0.1.159 port 38817 ssh2: ED25519 SHA256:q2Xw5cK1nVbq5YpP0l5JqM6h8W2s9xRzT4uA7bC3dE0";
    g.bench_function("sshd_aggressive_hit", |b| {
        b.iter(|| black_box(f.check(black_box(hit))))
    });
    g.bench_function("sshd_aggressive_miss", |b| {
        b.iter(|| black_box(f.check(black_box(miss))))
    });
    let u = builtin::load(&NamedOptions::parse("ufw-port-scan").unwrap(), &[]).unwrap();
    let ufw = "[50400.642142] [UFW BLOCK] IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC=198.18.6.248 DST=203.0.113.1 LEN=44 PROTO=TCP SPT=1 DPT=22";
    g.bench_function("ufw_hit", |b| b.iter(|| black_box(u.check(black_box(ufw)))));
    g.finish();

    // Route + match + count through the engine, ban effects discarded.
    let mut g = c.benchmark_group("engine");
    let loaded = config::load(&LoadOptions {
        file: None,
        env: false,
    })
    .unwrap();
    let mut s = config::resolve::resolve(&loaded).unwrap();
    s.force_dry_run();
    let mut e = Engine::new(&s, Metrics::new());
    let ctx = ctx();
    let events: Vec<_> = LINES.iter().map(|l| (*l).to_string()).collect();
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("on_event_mixed", |b| {
        b.iter(|| {
            for l in &events {
                let ev = syslog::parse(l, &ctx);
                black_box(e.on_event(&ev, ctx.received));
            }
            e.take_effects();
        })
    });
    g.finish();
}

fn window(c: &mut Criterion) {
    let mut g = c.benchmark_group("window");
    let ft = Duration::from_secs(600);
    let t0 = UNIX_EPOCH + Duration::from_secs(1_795_528_800);
    g.bench_function("record_same_address", |b| {
        let mut w = WindowCounter::new(100_000);
        let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9));
        let mut n = 0u64;
        b.iter(|| {
            n += 1;
            black_box(w.record(ip, t0 + Duration::from_millis(n), 1, 5, ft))
        })
    });
    g.bench_function("record_unique_addresses_at_cap", |b| {
        let mut w = WindowCounter::new(100_000);
        let mut n = 0u32;
        b.iter(|| {
            n = n.wrapping_add(1);
            let ip = IpAddr::V4(Ipv4Addr::from(0xC612_0000 | (n & 0x3_ffff)));
            black_box(w.record(ip, t0, 1, 5, ft))
        })
    });
    g.finish();
}

fn bans(c: &mut Criterion) {
    let mut g = c.benchmark_group("ban_manager");
    let jail = JailName::new("sshd").unwrap();
    let policy = BanTimePolicy::default();
    let t0 = UNIX_EPOCH + Duration::from_secs(1_795_528_800);
    g.bench_function("ban_then_expire_10k", |b| {
        b.iter_batched(
            BanManager::new,
            |mut m| {
                for i in 0..10_000u32 {
                    let req = BanRequest {
                        jail: &jail,
                        policy: &policy,
                        ip: IpAddr::V4(Ipv4Addr::from(0xC612_0000 | i)),
                        failures: 5,
                        ignored: false,
                        origin: BanOrigin::Stream,
                        random: 0.0,
                    };
                    let _ = m.ban(req, t0);
                }
                black_box(m.expire(t0 + Duration::from_secs(601)).len())
            },
            BatchSize::LargeInput,
        )
    });
    let _ = SystemTime::now();
    g.finish();
}

criterion_group!(benches, parse, filters, window, bans);
criterion_main!(benches);
