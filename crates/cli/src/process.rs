//! Process plumbing every long-running command shares: logging (`--log-format`),
//! the tokio runtime, and `ambos_tls::daemon`'s control by signals (SIGHUP
//! reloads, SIGTERM and Ctrl-C stop) and sd_notify.
use ambos_tls::daemon::{Control, LogFormat};
use std::future::Future;

/// `ambos list | head -1`: a reader that goes away makes `println!` panic
/// with "failed printing to stdout: Broken pipe"; that is the reader's
/// choice, not a failure, so exit 0 quietly. Other panics keep the default report.
pub fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let p = info.payload();
        let msg = p.downcast_ref::<String>().map(String::as_str).or_else(|| p.downcast_ref::<&str>().copied());
        if msg.is_some_and(|m| m.starts_with("failed printing to stdout") && m.contains("Broken pipe")) {
            std::process::exit(0);
        }
        default(info)
    }));
}

/// `--log-format` (env `AMBOS_LOG_FORMAT`), set once by `main`.
pub static LOG_FORMAT: std::sync::OnceLock<LogFormat> = std::sync::OnceLock::new();

/// Logs to stderr (`AMBOS_LOG=debug` for more) in the format `main` chose.
pub fn init_logging() {
    ambos_tls::daemon::init_logging(LOG_FORMAT.get().copied().unwrap_or_default());
}

/// The runtime of the servers and clients: a worker per core, or, when
/// this process may use one core (its CPU affinity or cgroup quota, a
/// sidecar's usual limit), one thread, where a work-stealing pool of one
/// worker would only add its bookkeeping (as linkerd2-proxy does): 1,916
/// fewer instructions per proxied HTTP/2 request (docs/benchmarks.md).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    if std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get) == 1 {
        tracing::debug!("one core: a single-threaded runtime");
        return tokio::runtime::Builder::new_current_thread().enable_all().build();
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build()
}

/// A one-thread runtime for a single blocking call (a CRL pull, a wait for Ctrl-C).
pub fn small_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

/// Runs a daemon (`serve`, `proxy`, `tunnel`, `agent`) with logging, on the
/// multi-threaded runtime, controlled by this process's signals.
pub fn daemon<Fut, E>(run: impl FnOnce(Control) -> Fut) -> anyhow::Result<()>
where
    Fut: Future<Output = Result<(), E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    init_logging();
    let rt = runtime()?;
    let control = rt.block_on(async { Control::from_signals() })?;
    Ok(rt.block_on(run(control))?)
}

/// Waits for SIGTERM or Ctrl-C (SIGHUP does nothing here).
pub fn wait_for_stop() -> anyhow::Result<()> {
    let rt = small_runtime()?;
    let control = rt.block_on(async { Control::from_signals() })?;
    rt.block_on(control.stopped());
    Ok(())
}
