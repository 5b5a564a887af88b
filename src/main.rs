//! The `switchyard` binary: parse the command line, then hand over to `app::run`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// glibc malloc showed up as ~20% of CPU under load; mimalloc is markedly cheaper for the
// many small, short-lived allocations of request handling.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc v3's `mi_option_purge_delay`: its place in `mi_option_e` (the Rust bindings
/// name only v2's options). A test pins it by the option's default.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long memory freed inside the process stays before going back to the OS.
const ALLOCATOR_PURGE_DELAY_MS: std::ffi::c_long = 10_000;

/// mimalloc hands freed pages back to the OS after one second. The spend writer's
/// commit buffers come back every interval, so under load the gateway kept faulting
/// fresh pages in (2 MiB zeroed each with transparent huge pages), some on the request
/// thread; ten seconds keeps them across intervals and still returns memory after a
/// burst. `MIMALLOC_PURGE_DELAY` in the environment still wins.
fn keep_freed_memory_longer() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option; runs first in `main`, before other threads.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ALLOCATOR_PURGE_DELAY_MS) };
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "switchyard",
    version,
    about = "A self-hosted, LiteLLM-compatible LLM gateway"
)]
struct Cli {
    /// LiteLLM-format config.yaml.
    #[arg(long, env = "SWITCHYARD_CONFIG", default_value = "config/example.yaml")]
    config: PathBuf,
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    host: String,
    #[arg(long, env = "PORT", default_value_t = 4000)]
    port: u16,
    /// Where the redb file lives.
    #[arg(long, env = "SWITCHYARD_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// A price file in LiteLLM's JSON format, loaded over the built-in prices.
    #[arg(long, env = "SWITCHYARD_PRICES")]
    prices: Option<PathBuf>,
    /// Threads serving requests (LiteLLM's `--num_workers`); default: the CPUs this
    /// process may run on. With one, the gateway runs a single-threaded runtime.
    #[arg(long, alias = "num_workers", env = "SWITCHYARD_WORKERS", value_parser = clap::value_parser!(u16).range(1..))]
    num_workers: Option<u16>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a config file and print its model groups.
    CheckConfig { path: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    if let Some(Command::CheckConfig { path }) = cli.command {
        return match switchyard::config::Config::load(&path) {
            Ok(cfg) => {
                println!("{}: ok", path.display());
                for group in cfg.model_groups() {
                    let deps: Vec<String> = cfg
                        .deployments
                        .iter()
                        .filter(|d| d.model_name == group)
                        .map(|d| format!("{}/{} ({})", d.provider, d.upstream_model, d.id))
                        .collect();
                    println!("  {group}: {}", deps.join(", "));
                }
                for f in &cfg.ignored {
                    println!("  ignored: {f}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        };
    }
    keep_freed_memory_longer();
    let workers = cli.num_workers.map(usize::from).unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    // On one core a work-stealing scheduler only adds cross-thread hand-offs: the
    // single-threaded runtime serves the same load with about a quarter less CPU a
    // request (bench/RESULTS.md). Blocking work (redb commits) still gets its own threads.
    let mut builder = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = switchyard::app::Options {
        config: cli.config,
        host: cli.host,
        port: cli.port,
        data_dir: cli.data_dir,
        prices: cli.prices,
    };
    match runtime.block_on(switchyard::app::run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // SAFETY: reads one integer option.
        let get = || unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            // The environment's value stands.
            let set = get();
            keep_freed_memory_longer();
            assert_eq!(get(), set);
            return;
        }
        // v3's default purge delay is 1000 ms and no option next to it defaults to that:
        // a mimalloc whose options moved fails here instead of being mistuned.
        assert_eq!(get(), 1000);
        keep_freed_memory_longer();
        assert_eq!(get(), ALLOCATOR_PURGE_DELAY_MS);
    }
}
