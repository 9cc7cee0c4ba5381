//! The process model every long-running command shares (`proxy`, `tunnel`,
//! `serve`, `agent`): SIGHUP asks for a reload, SIGTERM and SIGINT for a
//! graceful stop, and the service manager hears about both through
//! `NOTIFY_SOCKET` (sd-notify; nothing is sent without it). Logging to
//! stderr, as text or JSON lines, is set up here too.
use std::time::Duration;
use tokio::sync::watch;

/// What a daemon is asked to do: reload (a counter that moves) or stop.
/// Clones share the requests; a [`Control::manual`] one is driven by its [`Trigger`].
#[derive(Clone, Debug)]
pub struct Control {
    reloads: watch::Receiver<u64>,
    stop: watch::Receiver<bool>,
}

/// The sending side of a [`Control`]: signals in production, a test or an
/// in-process caller otherwise.
#[derive(Clone, Debug)]
pub struct Trigger {
    reloads: watch::Sender<u64>,
    stop: watch::Sender<bool>,
}

impl Trigger {
    pub fn reload(&self) {
        self.reloads.send_modify(|n| *n += 1);
    }

    pub fn stop(&self) {
        self.stop.send_replace(true);
    }
}

impl Control {
    /// A control driven by hand (tests, quickstart's in-process proxy).
    pub fn manual() -> (Trigger, Control) {
        let (reloads, reload_rx) = watch::channel(0);
        let (stop, stop_rx) = watch::channel(false);
        (Trigger { reloads, stop }, Control { reloads: reload_rx, stop: stop_rx })
    }

    /// SIGHUP → reload, SIGTERM or SIGINT → stop. Call inside a tokio
    /// runtime: the handlers are installed now, so SIGHUP no longer kills us.
    pub fn from_signals() -> std::io::Result<Control> {
        let (trigger, control) = Control::manual();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let (mut hup, mut term, mut int) =
                (signal(SignalKind::hangup())?, signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?);
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = hup.recv() => trigger.reload(),
                        _ = term.recv() => trigger.stop(),
                        _ = int.recv() => trigger.stop(),
                    }
                }
            });
        }
        #[cfg(not(unix))]
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                trigger.stop();
            }
        });
        Ok(control)
    }

    /// Resolves once a stop was asked for, or every [`Trigger`] is gone (as
    /// a dropped oneshot sender would).
    pub async fn stopped(&self) {
        let mut stop = self.stop.clone();
        let _ = stop.wait_for(|s| *s).await;
    }

    /// Resolves at the next reload request after the last one seen by this clone.
    pub async fn reload_requested(&mut self) {
        if self.reloads.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Tells the service manager (when `NOTIFY_SOCKET` is set) about the state;
/// a failure to tell it is logged, never fatal.
fn tell(state: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!("cannot notify the service manager: {e}");
    }
}

/// Listening (or otherwise ready): `READY=1`, and the watchdog pings start
/// when `WATCHDOG_USEC` is set. Call inside a tokio runtime.
pub fn notify_ready() {
    tell(&[sd_notify::NotifyState::Ready]);
    static WATCHDOG: std::sync::Once = std::sync::Once::new();
    if let Some(every) = sd_notify::watchdog_enabled() {
        // At half the interval, as sd_watchdog_enabled(3) advises.
        WATCHDOG.call_once(|| {
            tokio::spawn(async move {
                let mut tick = tokio::time::interval((every / 2).max(Duration::from_millis(1)));
                loop {
                    tick.tick().await;
                    tell(&[sd_notify::NotifyState::Watchdog]);
                }
            });
        });
    }
}

/// A reload starts: `RELOADING=1` with the monotonic time systemd asks for
/// (Type=notify-reload); [`notify_ready`] again when it is over.
pub fn notify_reloading() {
    match sd_notify::NotifyState::monotonic_usec_now() {
        Ok(now) => tell(&[sd_notify::NotifyState::Reloading, now]),
        Err(_) => tell(&[sd_notify::NotifyState::Reloading]),
    }
}

/// The graceful stop begins: `STOPPING=1`.
pub fn notify_stopping() {
    tell(&[sd_notify::NotifyState::Stopping]);
}

/// How log lines look on stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    /// One JSON object per line (tracing-subscriber's JSON formatter).
    Json,
}

/// Logs to stderr (`AMBOS_LOG=debug` for more); text is coloured only on a
/// terminal. A second call keeps the first subscriber (quickstart runs the
/// proxy in-process).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AMBOS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_trigger_asks_each_clone_for_a_reload_and_for_a_stop() {
        let (trigger, control) = Control::manual();
        let mut a = control.clone();
        let mut b = control.clone();
        trigger.reload();
        tokio::time::timeout(Duration::from_secs(1), a.reload_requested()).await.expect("a sees the reload");
        tokio::time::timeout(Duration::from_secs(1), b.reload_requested()).await.expect("b sees the reload");
        assert!(tokio::time::timeout(Duration::from_millis(50), a.reload_requested()).await.is_err(), "seen once");
        trigger.stop();
        tokio::time::timeout(Duration::from_secs(1), control.stopped()).await.expect("stopped");
        tokio::time::timeout(Duration::from_secs(1), b.stopped()).await.expect("every clone stops");
    }

    #[tokio::test]
    async fn a_dropped_trigger_means_stop_and_no_reload() {
        let (trigger, mut control) = Control::manual();
        assert!(tokio::time::timeout(Duration::from_millis(50), control.stopped()).await.is_err(), "not yet");
        drop(trigger);
        tokio::time::timeout(Duration::from_secs(1), control.stopped()).await.expect("stopped");
        assert!(tokio::time::timeout(Duration::from_millis(50), control.reload_requested()).await.is_err());
    }
}
