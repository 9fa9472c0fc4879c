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
use banstream::tools::{replay, test_filter};

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
    /// Run a filter over log lines, as the daemon would.
    TestFilter {
        /// A built-in name (`sshd[mode=aggressive]`), a filter file, or a regex with <HOST>.
        filter: String,
        /// A log file, `-` for stdin, or one literal line.
        input: String,
        /// One JSON object per line: {"line", "match", "host"}.
        #[arg(long)]
        json: bool,
        /// Print each failure line with its address.
        #[arg(long, alias = "print-all-matched")]
        show: bool,
        /// Print each missed line of a routed program.
        #[arg(long, alias = "print-all-missed")]
        missed: bool,
        /// Print each line an ignoreregex vetoed.
        #[arg(long, alias = "print-all-ignored")]
        ignored: bool,
        /// Route lines of this program to the filter instead of the filter's
        /// own programs (repeatable; `--program '*'` reads every line).
        #[arg(long = "program", value_name = "PROGRAM")]
        programs: Vec<String>,
    },
    /// Run the whole configuration in dry-run over a log file, message timestamps as the clock.
    Replay {
        /// The log file (`-` for stdin).
        logfile: String,
        /// One JSON object per ban, then a summary object.
        #[arg(long)]
        json: bool,
        /// The year of the first year-less (RFC 3164) timestamp; default: the
        /// year that puts it closest to the file's modification time.
        #[arg(long)]
        year: Option<i32>,
        /// Also print each unban (expiry) as it happens.
        #[arg(long)]
        unbans: bool,
        /// Matching threads (default: the number of cores less one, at least one).
        #[arg(long)]
        threads: Option<usize>,
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
            limit_malloc_arenas();
            let opts = DaemonOptions { load, dry_run };
            let settings = match daemon::load_settings(&opts) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("banstream: configuration error:\n{e}");
                    return code(1);
                }
            };
            banstream::service::logging::init(&settings.log_level, &settings.log);
            // One daemon edits a network namespace's firewall: another
            // configuration's daemon beside it would share its firewall
            // objects and remove them, bans and all, when it stops. The
            // file is opened as root, before the drop (/run is root's), by
            // every daemon but a dry run; it is locked now if a jail edits
            // the firewall, else by the reload that first makes one do so.
            use banstream::service::instance;
            let opened = match !dry_run && nix::unistd::geteuid().is_root() {
                true => instance::firewall(std::path::Path::new("/run")),
                false => Ok(None),
            };
            let mut firewall = opened.unwrap_or_else(|e| {
                instance::warn_unguarded(&e);
                None
            });
            if let Some(lock) = firewall.as_mut().filter(|_| settings.edits_firewall()) {
                if let Err(e) = lock.hold_unless_taken() {
                    eprintln!("banstream: {e}");
                    return code(1);
                }
            }
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
            // Before the firewall, the store or a socket is touched: a second
            // daemon on this socket or database stops here. After the drop,
            // so that directories the drop creates and hands over are not
            // created as root's first (the drop only chowns what it made).
            let _instance = match instance::acquire(&settings.control_socket, &settings.database) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("banstream: {e}");
                    return code(1);
                }
            };
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(worker_threads())
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("banstream: cannot start the runtime: {e}");
                    return code(1);
                }
            };
            match rt.block_on(daemon::run(opts, settings, firewall)) {
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
            missed,
            ignored,
            programs,
        } => {
            let show = test_filter::Show {
                matched: show,
                missed,
                ignored,
            };
            code(cli::test_filter(
                &load, &filter, &input, json, show, &programs,
            ))
        }
        Cmd::Replay {
            logfile,
            json,
            year,
            unbans,
            threads,
        } => {
            let opts = replay::Options {
                json,
                year,
                unbans,
                threads,
            };
            code(cli::replay(&load, &logfile, &opts))
        }
        cmd => client(cmd, args.socket, &load),
    }
}

/// Most tokio worker threads: the engine is one task and each listener is
/// one, so more threads on a big machine only add stacks and malloc arenas.
const MAX_WORKERS: usize = 4;

fn worker_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, MAX_WORKERS)
}

/// glibc gives each thread that allocates an arena of its own (up to 8 per
/// core), each holding freed memory apart: two keep the daemon's resident
/// memory close to what it uses. Must run before any thread starts. musl
/// has a single allocator state and no such knob.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; no thread runs yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
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
            let _ = match (json, jail.is_some()) {
                (true, _) => writeln!(out, "{v}"),
                (false, true) => cli::print_status_jail(&mut out, &v),
                (false, false) => cli::print_status_all(&mut out, &v),
            };
        }),
        Cmd::Ban { jail, addr } => run(&Request::Ban { jail, ip: addr }).map(|v| {
            let _ = cli::print_ban(&mut out, &v);
        }),
        Cmd::Unban { args, all } => match cli::unban_request(&args, all) {
            Err(e) => {
                eprintln!("banstream: {e}");
                Err(2)
            }
            Ok(r) => run(&r).map(|v| {
                let _ = cli::print_unban(&mut out, &v);
            }),
        },
        Cmd::Banned { json } => run(&Request::Banned).map(|v| {
            let _ = if json {
                writeln!(out, "{v}")
            } else {
                cli::print_banned(&mut out, &v)
            };
        }),
        Cmd::Reload => run(&Request::Reload).map(|v| {
            let _ = cli::print_reload(&mut out, &v);
        }),
        Cmd::Run { .. } | Cmd::Check | Cmd::TestFilter { .. } | Cmd::Replay { .. } => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(c) => code(c),
    }
}
