//! The `redis-failover-proxy` binary: parse flags, load and check the configuration, set up
//! logging and the runtime, run.

use std::process::ExitCode;

use clap::Parser;
use redis_failover_proxy::config::cli::Cli;
use redis_failover_proxy::config::LogFormat;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match cli.load() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(2);
        }
    };
    if cli.check {
        if let Err(e) = redis_failover_proxy::app::check(&cfg) {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
        println!("configuration is valid");
        return ExitCode::SUCCESS;
    }
    init_logging(cfg.log_format);
    // The control runtime (probes, DNS, Sentinel, failover, signals) is single-threaded;
    // clients are served by the worker threads `app` starts.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let metrics = match redis_failover_proxy::metrics::install() {
        Ok(h) => Some(h),
        Err(e) => {
            eprintln!("metrics disabled: {e}");
            None
        }
    };
    match runtime.block_on(redis_failover_proxy::app::run(cfg, &cli, metrics)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
