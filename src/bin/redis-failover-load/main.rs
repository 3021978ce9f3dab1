//! `redis-failover-load`: a load generator for Redis-protocol servers that also checks, with a
//! write ledger and (optionally) MONITOR on every node, that a failover lost no acknowledged
//! write and sent none to a superseded master.
//!
//! [`cli`] parses and checks the flags; [`run`] composes a run: [`worker`]s (one per
//! connection, sending [`workload`] commands over [`net`] connections and classifying replies
//! with [`outcome`]) feed [`stats`] and the [`ledger`]; [`progress`] prints a line a second;
//! [`monitor`] and [`authority`] watch the nodes, and [`superseded`] judges what they saw;
//! [`verify`] reads the keys back; [`report`] prints the result and picks the exit code.
//!
//! Four modules are the tests' too: [`ledger`], [`outcome`], [`monitor_line`] and
//! [`handshake`] depend on nothing else here, and `tests/support/harness.rs` includes them,
//! so the failover tests judge lost writes, read MONITOR lines and authenticate exactly as
//! this harness does. Their unit tests run with this binary's (`cargo test --bin
//! redis-failover-load`) and again in each test target that includes them.

mod authority;
mod cli;
mod handshake;
mod ledger;
mod monitor;
mod monitor_line;
mod net;
mod outcome;
mod progress;
mod report;
mod run;
#[cfg(test)]
mod shared_tests;
mod stats;
mod superseded;
mod verify;
mod worker;
mod workload;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    let settings = match args.settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(3);
        }
    };
    let json = settings.json.clone();
    let report = match runtime.block_on(run::run(settings)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = output(&report, json.as_deref()) {
        eprintln!("error: {e}");
        return ExitCode::from(3);
    }
    ExitCode::from(report.exit_code)
}

/// Prints the text report on stdout, and the JSON one where --json says (`-`: stdout, instead
/// of the text).
fn output(report: &report::Report, json: Option<&str>) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(report).map_err(std::io::Error::other);
    match json {
        Some("-") => println!("{}", text?),
        Some(path) => {
            print!("{}", report::text(report));
            std::fs::write(path, text? + "\n")?;
        }
        None => print!("{}", report::text(report)),
    }
    Ok(())
}
