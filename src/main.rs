//! The `switchyard` binary: parse the command line, then hand over to `app::run`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// glibc malloc showed up as ~20% of CPU under load; mimalloc is markedly cheaper for the
// many small, short-lived allocations of request handling.
#[global_allocator]
static GLOBAL: Mimalloc = Mimalloc;

/// mimalloc, through its plain entry points whenever the alignment asked for is one it
/// gives such a block anyway. `mimalloc::MiMalloc` always calls the aligned ones, whose
/// fast path stops at 1 KiB: every larger allocation (a few a request) took mimalloc's
/// generic aligned path, several times the cost of a plain one.
struct Mimalloc;

/// mimalloc aligns every block of 16 bytes or more to 16 (`MI_MAX_ALIGN_SIZE`), and
/// smaller ones to their size.
const PLAIN_ALIGN: usize = 16;

fn plain(align: usize, size: usize) -> bool {
    align <= PLAIN_ALIGN && align <= size
}

/// A block for `layout` from mimalloc's `plain` entry point when its own alignment covers
/// the layout, else from the `aligned` one.
///
/// # Safety
/// As `GlobalAlloc::alloc`.
unsafe fn allocate(
    layout: std::alloc::Layout,
    plain_entry: unsafe extern "C" fn(usize) -> *mut std::ffi::c_void,
    aligned_entry: unsafe extern "C" fn(usize, usize) -> *mut std::ffi::c_void,
) -> *mut u8 {
    let (size, align) = (layout.size(), layout.align());
    // SAFETY: plain C allocation calls, with an alignment `plain` shows mimalloc gives.
    unsafe {
        if plain(align, size) {
            plain_entry(size).cast()
        } else {
            aligned_entry(size, align).cast()
        }
    }
}

// SAFETY: each call hands mimalloc a layout it serves with at least the alignment asked
// for (`plain`), or its aligned variant; blocks are freed by the same allocator.
unsafe impl std::alloc::GlobalAlloc for Mimalloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: as the trait's.
        unsafe {
            allocate(
                layout,
                libmimalloc_sys::mi_malloc,
                libmimalloc_sys::mi_malloc_aligned,
            )
        }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: as the trait's.
        unsafe {
            allocate(
                layout,
                libmimalloc_sys::mi_zalloc,
                libmimalloc_sys::mi_zalloc_aligned,
            )
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from this allocator (the trait's contract).
        unsafe { libmimalloc_sys::mi_free(ptr.cast()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        use libmimalloc_sys::{mi_realloc, mi_realloc_aligned};
        let align = layout.align();
        // SAFETY: `ptr` came from this allocator; the new block keeps `align` as in `alloc`.
        unsafe {
            if plain(align, new_size) {
                mi_realloc(ptr.cast(), new_size).cast()
            } else {
                mi_realloc_aligned(ptr.cast(), new_size, align).cast()
            }
        }
    }
}

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
    fn every_block_has_the_alignment_asked_for_and_keeps_its_bytes() {
        use std::alloc::{alloc, alloc_zeroed, dealloc, realloc, Layout};
        for align in [1usize, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [
                1usize, 3, 8, 12, 16, 24, 40, 100, 1000, 1024, 1025, 5000, 70_000,
            ] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: non-zero sizes; every block is freed with its layout.
                unsafe {
                    let zeroed = alloc_zeroed(layout);
                    assert_eq!(zeroed as usize % align, 0, "zeroed {size}/{align}");
                    assert!(std::slice::from_raw_parts(zeroed, size)
                        .iter()
                        .all(|b| *b == 0));
                    dealloc(zeroed, layout);
                    let p = alloc(layout);
                    assert_eq!(p as usize % align, 0, "{size}/{align}");
                    for i in 0..size {
                        *p.add(i) = i as u8;
                    }
                    // Grown, then shrunk below the start: the first bytes stay.
                    let (mut block, mut current) = (p, layout);
                    for new_size in [size * 3, size.div_ceil(2)] {
                        block = realloc(block, current, new_size);
                        current = Layout::from_size_align(new_size, align).unwrap();
                        assert_eq!(
                            block as usize % align,
                            0,
                            "realloc {size}->{new_size}/{align}"
                        );
                        for i in 0..size.min(new_size) {
                            assert_eq!(*block.add(i), i as u8);
                        }
                    }
                    dealloc(block, current);
                }
            }
        }
    }

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
