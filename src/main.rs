//! The `banstream` command: argument parsing and glue. The work is in the
//! library; see `lib.rs` for the map.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use banstream::cli;
use banstream::config::LoadOptions;
use banstream::control::Request;
use banstream::daemon::{self, DaemonOptions};
use banstream::tools::test_filter;

/// A syslog receiver that bans attackers in-stream.
#[derive(Parser)]
#[command(name = "banstream", version, about)]
struct Cli {
    /// Configuration file (default: /etc/banstream/banstream.toml if it exists, else the built-in defaults).
    #[arg(short = 'c', long = "config", global = true)]
    config: Option<PathBuf>,
    /// Control socket of the running daemon (default: from the configuration).
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon in the foreground.
    Run {
        /// Replace every action with `log`: record bans, touch no firewall.
        #[arg(long)]
        dry_run: bool,
    },
    /// Validate the configuration; exit non-zero with file:line on error.
    Check,
    /// Show jails, or one jail in detail.
    Status {
        /// The jail.
        jail: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ban an address in a jail.
    Ban {
        /// The jail.
        jail: String,
        /// The address.
        addr: String,
    },
    /// Lift a ban: `unban ADDR` (every jail), `unban JAIL ADDR`, `unban --all [JAIL]`.
    Unban {
        /// `[JAIL] ADDR`, or `[JAIL]` with --all.
        #[arg(num_args = 0..=2)]
        args: Vec<String>,
        /// Lift every ban.
        #[arg(long)]
        all: bool,
    },
    /// List the bans in force.
    Banned {
        /// Print JSON: [{"jail", "ip", "expires"}].
        #[arg(long)]
        json: bool,
    },
    /// Re-read the configuration (atomically; a broken one is refused).
    Reload,
    /// Run a filter over log lines.
    TestFilter {
        /// A built-in name (`sshd[mode=aggressive]`), a filter file, or a regex with <HOST>.
        filter: String,
        /// A log file, `-` for stdin, or one literal line.
        input: String,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// Print each matched line with its address.
        #[arg(long)]
        show: bool,
    },
}

fn code(c: i32) -> ExitCode {
    ExitCode::from(u8::try_from(c).unwrap_or(1))
}

fn main() -> ExitCode {
    let args = Cli::parse();
    let load = LoadOptions {
        file: args.config.clone(),
        env: true,
    };
    match args.cmd {
        Cmd::Run { dry_run } => {
            let opts = DaemonOptions { load, dry_run };
            let settings = match daemon::load_settings(&opts) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("banstream: configuration error:\n{e}");
                    return code(1);
                }
            };
            banstream::service::logging::init(&settings.log_level, &settings.log);
            // Before the runtime starts: capabilities are per thread.
            if let Some(run) = &settings.run {
                match banstream::service::privileges::drop_to(run, &settings.service_paths()) {
                    Ok(d) => tracing::info!(
                        user = %d.user,
                        uid = d.uid,
                        gid = d.gid,
                        capabilities = ?banstream::service::privileges::cap_names(&d.capabilities),
                        "dropped root"
                    ),
                    Err(e) => {
                        eprintln!("banstream: {e}");
                        return code(1);
                    }
                }
            }
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("banstream: cannot start the runtime: {e}");
                    return code(1);
                }
            };
            match rt.block_on(daemon::run(opts, settings)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("banstream: {e:#}");
                    code(1)
                }
            }
        }
        Cmd::Check => {
            let mut out = std::io::stdout();
            code(cli::check(&load, &mut out))
        }
        Cmd::TestFilter {
            filter,
            input,
            json,
            show,
        } => test_filter_cmd(&load, &filter, &input, json, show),
        cmd => client(cmd, args.socket, &load),
    }
}

fn test_filter_cmd(
    load: &LoadOptions,
    filter: &str,
    input: &str,
    json: bool,
    show: bool,
) -> ExitCode {
    let dirs = banstream::config::load(load)
        .map(|l| banstream::config::resolve::filter_dirs(&l))
        .unwrap_or_default();
    let f = match test_filter::load_filter(filter, &dirs) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("banstream: {e}");
            return code(1);
        }
    };
    let reader: Box<dyn std::io::Read> = if input == "-" {
        Box::new(std::io::stdin())
    } else if std::path::Path::new(input).is_file() {
        match std::fs::File::open(input) {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("banstream: {input}: {e}");
                return code(1);
            }
        }
    } else {
        Box::new(std::io::Cursor::new(format!("{input}\n").into_bytes()))
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let report = test_filter::run(&f, reader, |r, line| {
        if json {
            let _ = serde_json::to_writer(&mut out, r);
            let _ = out.write_all(b"\n");
        } else if show && r.matched {
            let _ = writeln!(
                out,
                "{:>6}  {:<40} {line}",
                r.line,
                r.host.as_deref().unwrap_or("-")
            );
        }
    });
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("banstream: reading {input}: {e}");
            return code(1);
        }
    };
    if !json {
        let _ = writeln!(
            out,
            "\nFilter: {} (programs: {})",
            f.name(),
            if f.programs().is_empty() {
                "any".to_string()
            } else {
                f.programs().join(", ")
            }
        );
        let _ = writeln!(out, "Failregex hits:");
        for (i, src) in f.failregex_sources().enumerate() {
            let _ = writeln!(out, "  #{i:<2} {:>8}  {src}", report.per_regex[i]);
        }
        let _ = writeln!(
            out,
            "Lines: {}, matched: {}, missed: {}, ignored: {}",
            report.lines,
            report.matched,
            report.lines - report.matched - report.ignored,
            report.ignored
        );
        let rate = if report.elapsed > 0.0 {
            report.lines as f64 / report.elapsed
        } else {
            0.0
        };
        let _ = writeln!(out, "Speed: {:.0} lines/s ({:.3} s)", rate, report.elapsed);
    }
    let _ = out.flush();
    ExitCode::SUCCESS
}

fn client(cmd: Cmd, socket: Option<PathBuf>, load: &LoadOptions) -> ExitCode {
    let socket = match cli::socket_path(socket.as_deref(), load) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("banstream: {e}");
            return code(1);
        }
    };
    let mut out = std::io::stdout();
    let run = |req: &Request| cli::ask(&socket, req);
    let result: Result<(), i32> = match cmd {
        Cmd::Status { jail, json } => run(&Request::Status { jail: jail.clone() }).map(|v| {
            if json {
                let _ = writeln!(out, "{v}");
            } else if jail.is_some() {
                let _ = cli::print_status_jail(&mut out, &v);
            } else {
                let _ = cli::print_status_all(&mut out, &v);
            }
        }),
        Cmd::Ban { jail, addr } => run(&Request::Ban { jail, ip: addr }).map(|v| {
            let exp = v["expires"]
                .as_u64()
                .map_or("permanent".to_string(), |e| format!("until {e}"));
            let _ = writeln!(
                out,
                "banned {} in {} ({exp})",
                v["ip"].as_str().unwrap_or(""),
                v["jail"].as_str().unwrap_or("")
            );
        }),
        Cmd::Unban { args, all } => {
            let req = match (all, args.as_slice()) {
                (true, []) => Some(Request::Unban {
                    jail: None,
                    ip: None,
                    all: true,
                }),
                (true, [j]) => Some(Request::Unban {
                    jail: Some(j.clone()),
                    ip: None,
                    all: true,
                }),
                (false, [ip]) => Some(Request::Unban {
                    jail: None,
                    ip: Some(ip.clone()),
                    all: false,
                }),
                (false, [j, ip]) => Some(Request::Unban {
                    jail: Some(j.clone()),
                    ip: Some(ip.clone()),
                    all: false,
                }),
                _ => None,
            };
            match req {
                None => {
                    eprintln!("banstream: usage: unban [JAIL] ADDR | unban --all [JAIL]");
                    Err(2)
                }
                Some(r) => run(&r).map(|v| {
                    let _ = writeln!(out, "unbanned {} ban(s)", v["unbanned"]);
                }),
            }
        }
        Cmd::Banned { json } => run(&Request::Banned).map(|v| {
            if json {
                let _ = writeln!(out, "{v}");
            } else {
                for b in v.as_array().cloned().unwrap_or_default() {
                    let exp = b["expires"]
                        .as_u64()
                        .map_or("permanent".to_string(), |e| e.to_string());
                    let _ = writeln!(
                        out,
                        "{:<20} {:<40} {exp}",
                        b["jail"].as_str().unwrap_or(""),
                        b["ip"].as_str().unwrap_or("")
                    );
                }
            }
        }),
        Cmd::Reload => run(&Request::Reload).map(|_| {
            let _ = writeln!(out, "reloaded");
        }),
        Cmd::Run { .. } | Cmd::Check | Cmd::TestFilter { .. } => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(c) => code(c),
    }
}
