//! `rtcam`: parse, load config, run; exit 2 on bad flags or config, 1 on a
//! failure to start.

use std::process::ExitCode;

use clap::Parser;
use rtcam::config::{Cli, Config};

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if let Some(command) = cli.command.take() {
        let state_dir = match Config::state_dir_of(&cli) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("rtcam: error: {e}");
                return ExitCode::from(2);
            }
        };
        return match rtcam::commands::run(command, &state_dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("rtcam: error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match Config::from_cli(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rtcam: error: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,str0m=warn,dimpl=warn".into()),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        // Colours on a terminal, unless NO_COLOR asks otherwise (no-color.org):
        // a serial console is a terminal whose log is read as text.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .init();
    one_malloc_arena();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rtcam: error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(rtcam::app::run(config)) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("rtcam: error: {e:#}");
            1
        }
    };
    drop(runtime);
    exit_without_c_destructors(code)
}

/// Ends the process, once everything of ours has shut down in order,
/// without the C libraries' exit handlers: aws-lc's free its global seed
/// generator and lock every thread's, and a thread still running (a library's
/// own) that then asks for its first random bytes gets `abort()` with no
/// message. Reproduced with aws-lc-sys 0.47 in 23 of 100 runs under
/// qemu-aarch64 and 2 of 200 natively; a suspect for the start-up/exit
/// SIGABRTs seen in CI (issue #20). The log (stderr) is unbuffered.
fn exit_without_c_destructors(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // SAFETY: _exit ends the process at once; nothing of ours runs after it.
    unsafe { libc::_exit(code) }
}

/// One glibc malloc arena for the whole process, set before any thread
/// starts. Each encoder, the capture thread and the runtime's workers would
/// otherwise get arenas of their own, and memory one of them freed (the
/// start-up probe encoders, a stopped encoder) stays resident in it instead
/// of serving the next: with one 720p viewer VmRSS was 46 MiB with two
/// arenas (`MALLOC_ARENA_MAX=2`, the unit's old setting) and 37 MiB with one.
/// These threads allocate a few times per frame, so one arena's lock is not
/// contended.
fn one_malloc_arena() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets a malloc parameter; no thread but this one runs yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        // Blocks from 4 MiB up (a password check's Argon2 memory) are
        // mapped for themselves and go back to the system when freed;
        // fixed, so glibc does not raise it after the first such free and
        // keep the next ones in the heap.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}
