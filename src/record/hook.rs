//! `--on-event COMMAND`: run for every motion event, the event as JSON on
//! its standard input, through `sh -c`, one at a time on a thread of its
//! own, and killed after [`TIME_LIMIT`]. A slow hook never holds anything
//! up: events that find [`QUEUE`] waiting are dropped, counted and logged.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::time::{Duration, Instant};

pub const TIME_LIMIT: Duration = Duration::from_secs(10);
const QUEUE: usize = 8;

#[derive(Debug, Default)]
pub struct HookStats {
    pub ran: AtomicU64,
    pub failed: AtomicU64,
    pub killed: AtomicU64,
    pub dropped: AtomicU64,
}

pub struct Hook {
    tx: SyncSender<String>,
    pub stats: Arc<HookStats>,
}

impl Hook {
    pub fn start(command: String) -> std::io::Result<Hook> {
        let (tx, rx) = mpsc::sync_channel::<String>(QUEUE);
        let stats = Arc::new(HookStats::default());
        let s = stats.clone();
        std::thread::Builder::new()
            .name("on-event".into())
            .spawn(move || {
                for event in rx {
                    run_one(&command, &event, &s);
                }
            })?;
        Ok(Hook { tx, stats })
    }

    /// Hands the event over; never waits.
    pub fn fire(&self, event_json: String) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(event_json) {
            let n = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!("on-event: the hook is behind, {n} events not handed to it so far");
            }
        }
    }
}

fn run_one(command: &str, event: &str, stats: &HookStats) {
    let child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("on-event: cannot start the hook: {e}");
            return;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its input is its own business.
        let _ = stdin.write_all(event.as_bytes());
        let _ = stdin.write_all(b"\n");
    }
    let started = Instant::now();
    stats.ran.fetch_add(1, Ordering::Relaxed);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return,
            Ok(Some(status)) => {
                let n = stats.failed.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!("on-event: the hook exited with {status} ({n} failures so far)");
                }
                return;
            }
            Ok(None) if started.elapsed() < TIME_LIMIT => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let n = stats.killed.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(
                        "on-event: the hook ran past {TIME_LIMIT:?} and was killed ({n} so far)"
                    );
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_for(cond: impl Fn() -> bool) {
        let t = Instant::now();
        while !cond() && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn the_hook_reads_the_event_and_a_failing_one_is_counted() {
        let dir = std::env::temp_dir().join(format!("rtcam-hook-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("event.json");
        let hook = Hook::start(format!("cat > {}; exit 3", out.display())).unwrap();
        hook.fire(r#"{"id":1,"state":"started"}"#.into());
        wait_for(|| hook.stats.failed.load(Ordering::Relaxed) == 1);
        assert_eq!(
            std::fs::read_to_string(&out).unwrap().trim(),
            r#"{"id":1,"state":"started"}"#
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_hung_hook_never_holds_up_the_events_behind_it_for_long() {
        let hook = Hook::start("sleep 12".into()).unwrap();
        let t = Instant::now();
        for _ in 0..(QUEUE + 4) {
            hook.fire("{}".into());
        }
        assert!(t.elapsed() < Duration::from_secs(1), "fire never waits");
        assert!(hook.stats.dropped.load(Ordering::Relaxed) >= 3);
    }
}
