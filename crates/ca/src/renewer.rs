//! Keeping a certificate renewed without a human (`ambos agent`): renew at
//! a fraction (2/3) of the lifetime plus a little jitter to spread a fleet,
//! retry with capped exponential backoff, run a hook after each renewal.
//! The schedule is pure (time is a parameter); the caller supplies the
//! renewal itself through [`Renew`].
use std::future::Future;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

/// The fractions of the lifetime [`RenewOptions::renew_at`] may take.
pub const RENEW_AT: RangeInclusive<f64> = 0.1..=0.95;

/// A renewal, as `ambos renew` and `ambos agent` ask for it.
#[derive(Clone, Debug)]
pub struct RenewOptions {
    /// Current certificate chain (replaced in place, atomically).
    pub cert: PathBuf,
    /// Current key (replaced in place, atomically, unless `keep_key`).
    pub key: PathBuf,
    pub keep_key: bool,
    /// Fraction of the lifetime after which to renew, within [`RENEW_AT`].
    pub renew_at: f64,
    /// Run via `sh -c` after each successful renewal, e.g. a reload.
    pub exec: Option<String>,
    /// Also write NAME.p12 beside the certificate with this password.
    pub p12: Option<ambos_pki::P12Password>,
}

/// A certificate's validity in Unix seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

impl Validity {
    /// Seconds, at least 1.
    pub fn lifetime(&self) -> f64 {
        (self.not_after - self.not_before).max(1) as f64
    }

    /// How long to wait at `now` before renewing at `renew_at` of the
    /// lifetime, plus `jitter` (0..1) of 2 % of the lifetime. Past due: the jitter only.
    pub fn wait(&self, renew_at: f64, now: i64, jitter: f64) -> Duration {
        let due = self.not_before + (self.lifetime() * renew_at) as i64;
        Duration::from_secs((due - now).max(0) as u64) + Duration::from_secs_f64(self.lifetime() * 0.02).mul_f64(jitter)
    }
}

/// Waits between failed attempts: 1 s doubling up to a tenth of the
/// lifetime, within 1 s..60 s.
#[derive(Clone, Debug)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(v: &Validity) -> Backoff {
        let max = Duration::from_secs_f64((v.lifetime() / 10.0).clamp(1.0, 60.0));
        Backoff { next: Duration::from_secs(1).min(max), max }
    }

    /// The wait before the next attempt.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }
}

/// A jitter fraction (0..1) from the clock's nanoseconds: enough to spread a fleet.
pub fn clock_jitter() -> f64 {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    f64::from(nanos % 1000) / 1000.0
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// What the renewer needs from its caller.
pub trait Renew {
    type Error: std::fmt::Display;
    /// The validity of the certificate now in place.
    fn validity(&self) -> Result<Validity, Self::Error>;
    /// Before each attempt: e.g. read the CRLs again (a failure keeps the previous ones).
    fn refresh(&mut self) -> impl Future<Output = ()>;
    /// One renewal; the files change only on success.
    fn renew(&mut self) -> impl Future<Output = Result<Renewed, Self::Error>>;
    /// Whether a failed renewal is one no retry can cure (the certificate
    /// is revoked or expired): the loop then ends with it.
    fn is_permanent(e: &Self::Error) -> bool;
    /// Waits `d` (a timer in production), unless asked to reload or stop first.
    fn pause(&mut self, d: Duration) -> impl Future<Output = Wake>;
}

/// Why a [`Renew::pause`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    Elapsed,
    /// Read the certificate again (SIGHUP) and renew if it is due.
    Reload,
    Stop,
}

/// What a renewal brought, for the log.
#[derive(Clone, Debug)]
pub struct Renewed {
    pub serial: String,
    pub not_after: String,
}

/// The agent loop over [`RenewOptions`].
pub struct Renewer {
    opts: RenewOptions,
}

impl Renewer {
    pub fn new(opts: RenewOptions) -> Renewer {
        Renewer { opts }
    }

    /// Renews until asked to stop during a pause (then Ok). An unreadable
    /// certificate or a permanent refusal ends the loop with its error;
    /// another failed renewal is retried with backoff. A reload during a
    /// pause starts over from the certificate's files.
    pub async fn run<R: Renew>(&self, r: &mut R) -> Result<(), R::Error> {
        'files: loop {
            let v = r.validity()?;
            let now = unix_now();
            // Expired: no jitter to wait for; the attempt says what to do.
            let wait =
                if v.not_after <= now { Duration::ZERO } else { v.wait(self.opts.renew_at, now, clock_jitter()) };
            tracing::info!(cert = %self.opts.cert.display(), "certificate valid until {} (unix); next renewal in {:.0}s", v.not_after, wait.as_secs_f64());
            match r.pause(wait).await {
                Wake::Elapsed => {}
                Wake::Reload => continue 'files,
                Wake::Stop => return Ok(()),
            }
            let mut backoff = Backoff::new(&v);
            loop {
                r.refresh().await;
                match r.renew().await {
                    Ok(done) => {
                        tracing::info!(serial = %done.serial, "renewed; new certificate valid until {}", done.not_after);
                        if let Some(cmd) = &self.opts.exec {
                            run_hook(cmd).await;
                        }
                        break;
                    }
                    Err(e) if R::is_permanent(&e) => return Err(e),
                    Err(e) => {
                        let wait = backoff.next_wait();
                        tracing::warn!("renewal failed, keeping the current files, retrying in {wait:?}: {e:#}");
                        match r.pause(wait).await {
                            Wake::Elapsed => {}
                            Wake::Reload => continue 'files,
                            Wake::Stop => return Ok(()),
                        }
                    }
                }
            }
        }
    }
}

/// Runs `cmd` via `sh -c`; a failure is logged, never fatal: the new files are in place.
pub async fn run_hook(cmd: &str) {
    match tokio::process::Command::new("sh").arg("-c").arg(cmd).status().await {
        Ok(s) if s.success() => {}
        Ok(s) => tracing::warn!("--exec '{cmd}' exited with {s}"),
        Err(e) => tracing::warn!("--exec '{cmd}' failed to start: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    #[test]
    fn renewal_is_due_at_two_thirds_of_the_lifetime() {
        let v = Validity { not_before: 1_000, not_after: 1_000 + 3 * DAY };
        assert_eq!(v.wait(2.0 / 3.0, 1_000, 0.0), Duration::from_secs(2 * DAY as u64));
        assert_eq!(v.wait(2.0 / 3.0, 1_000 + DAY, 0.0), Duration::from_secs(DAY as u64));
        assert_eq!(v.wait(0.5, 1_000, 0.0), Duration::from_secs(3 * DAY as u64 / 2));
    }

    #[test]
    fn past_due_waits_only_the_jitter() {
        let v = Validity { not_before: 0, not_after: 100 };
        assert_eq!(v.wait(2.0 / 3.0, 99, 0.0), Duration::ZERO);
        assert_eq!(v.wait(2.0 / 3.0, 1_000, 0.5), Duration::from_secs(1));
    }

    #[test]
    fn jitter_is_at_most_two_percent_of_the_lifetime() {
        let v = Validity { not_before: 0, not_after: 1_000 };
        let due = v.wait(0.5, 0, 0.0);
        assert_eq!(v.wait(0.5, 0, 0.999) - due, Duration::from_secs_f64(20.0 * 0.999));
        for _ in 0..100 {
            assert!((0.0..1.0).contains(&clock_jitter()));
        }
    }

    #[test]
    fn a_lifetime_of_zero_counts_as_one_second() {
        let v = Validity { not_before: 50, not_after: 50 };
        assert_eq!(v.lifetime(), 1.0);
        assert_eq!(Backoff::new(&v).next_wait(), Duration::from_secs(1));
    }

    #[test]
    fn backoff_doubles_up_to_a_tenth_of_the_lifetime_within_one_minute() {
        let hour = Validity { not_before: 0, not_after: 3_600 };
        let mut b = Backoff::new(&hour);
        let waits: Vec<u64> = (0..8).map(|_| b.next_wait().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        let short = Validity { not_before: 0, not_after: 50 };
        let mut b = Backoff::new(&short);
        let waits: Vec<u64> = (0..4).map(|_| b.next_wait().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 5]);
        let tiny = Validity { not_before: 0, not_after: 3 };
        assert_eq!(Backoff::new(&tiny).next_wait(), Duration::from_secs(1), "never below 1 s");
    }

    #[test]
    fn the_default_fraction_is_allowed() {
        assert!(RENEW_AT.contains(&(2.0 / 3.0)));
        assert!(!RENEW_AT.contains(&1.0) && !RENEW_AT.contains(&0.05));
    }

    /// A certificate whose first renewal attempt fails; pauses are recorded, not slept.
    struct Fake {
        validity: Validity,
        attempts: u32,
        renewed: u32,
        pauses: Vec<Duration>,
        /// Pauses to allow before saying stop.
        allowed_pauses: usize,
        /// Every attempt is refused for good.
        revoked: bool,
    }

    fn fake(validity: Validity, allowed_pauses: usize) -> Fake {
        Fake { validity, attempts: 0, renewed: 0, pauses: Vec::new(), allowed_pauses, revoked: false }
    }

    impl Renew for Fake {
        type Error = String;
        fn validity(&self) -> Result<Validity, String> {
            if self.renewed == 2 {
                return Err("stop".into());
            }
            Ok(self.validity)
        }
        async fn refresh(&mut self) {}
        async fn renew(&mut self) -> Result<Renewed, String> {
            self.attempts += 1;
            if self.revoked {
                return Err("revoked".into());
            }
            if self.attempts == 1 {
                return Err("CA unreachable".into());
            }
            self.renewed += 1;
            Ok(Renewed { serial: "01".into(), not_after: "later".into() })
        }
        fn is_permanent(e: &String) -> bool {
            e == "revoked"
        }
        async fn pause(&mut self, d: Duration) -> Wake {
            self.pauses.push(d);
            if self.pauses.len() <= self.allowed_pauses {
                Wake::Elapsed
            } else {
                Wake::Stop
            }
        }
    }

    #[tokio::test]
    async fn the_loop_retries_a_failed_renewal_and_runs_the_hook() {
        let dir = std::env::temp_dir().join(format!("ambos-renewer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let marker = dir.join("hook-ran");
        let opts = RenewOptions {
            cert: dir.join("c.crt"),
            key: dir.join("c.key"),
            keep_key: false,
            renew_at: 2.0 / 3.0,
            exec: Some(format!("echo x >> {}", marker.display())),
            p12: None,
        };
        let now = unix_now();
        // Past due: each wait is the jitter only.
        let mut fake = fake(Validity { not_before: now - 100, not_after: now + 1 }, 10);
        let end = Renewer::new(opts).run(&mut fake).await;
        assert_eq!(end, Err("stop".to_string()));
        assert_eq!((fake.attempts, fake.renewed), (3, 2), "one failure retried, then two renewals");
        assert_eq!(fake.pauses.len(), 3, "due, backoff after the failure, due again");
        assert!(fake.pauses[0] <= Duration::from_secs(3), "{:?}", fake.pauses);
        assert_eq!(fake.pauses[1], Duration::from_secs(1), "the first backoff");
        assert_eq!(std::fs::read_to_string(&marker).unwrap(), "x\nx\n", "the hook ran after each renewal");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_permanent_refusal_ends_the_loop_without_a_retry() {
        let now = unix_now();
        let opts = RenewOptions {
            cert: "c.crt".into(),
            key: "c.key".into(),
            keep_key: false,
            renew_at: 0.5,
            exec: None,
            p12: None,
        };
        let mut fake = Fake { revoked: true, ..fake(Validity { not_before: now - 100, not_after: now + 1 }, 10) };
        let end = Renewer::new(opts).run(&mut fake).await;
        assert_eq!(end, Err("revoked".to_string()));
        assert_eq!((fake.attempts, fake.pauses.len()), (1, 1), "one attempt after the wait, no backoff");
    }

    #[tokio::test]
    async fn a_stop_during_the_wait_ends_the_loop() {
        let now = unix_now();
        let opts = RenewOptions {
            cert: "c.crt".into(),
            key: "c.key".into(),
            keep_key: false,
            renew_at: 2.0 / 3.0,
            exec: None,
            p12: None,
        };
        let mut fake = fake(Validity { not_before: now, not_after: now + 365 * DAY }, 0);
        let end = Renewer::new(opts).run(&mut fake).await;
        assert_eq!(end, Ok(()));
        assert_eq!(fake.attempts, 0);
        let two_thirds = Duration::from_secs(243 * DAY as u64);
        assert!(fake.pauses[0] >= two_thirds - Duration::from_secs(2), "{:?}", fake.pauses);
    }
}
