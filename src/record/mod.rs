//! Remembering what happened: motion events, clips on the device, and
//! their retention.
//!
//! ```text
//! capture -> FrameTap -> motion thread (watch.rs: small luma -> motion.rs) -> events
//!                                            events -> rtc (viewers), hook.rs, recorder
//! encoder -> RecordTap -> recorder thread (recorder.rs + ring.rs, sans-IO) -> fmp4.rs
//!                               -> bounded queue -> disk thread (disk.rs: files, retention.rs)
//! ```
//!
//! Nothing upstream ever waits on a recorder: every road into it is a
//! `try_send` that drops (and says so) when it is full.

pub mod disk;
pub mod events;
pub mod fmp4;
pub mod hook;
pub mod motion;
pub mod recorder;
pub mod retention;
pub mod ring;
pub mod status;
pub mod tap;
pub mod watch;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use events::{EventBoard, MotionNotice};
pub use tap::RecordTap;

/// What the HTTP plane needs: the state, the events, the zones, the clips.
#[derive(Clone)]
pub struct RecordView {
    pub status: status::RecordStatus,
    pub events: EventBoard,
    pub zones: watch::Zones,
    pub dir: PathBuf,
    /// Motion detection runs.
    pub motion: bool,
}

/// `--record`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordMode {
    #[default]
    Off,
    Motion,
    Continuous,
}

impl std::str::FromStr for RecordMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "off" => Ok(RecordMode::Off),
            "motion" => Ok(RecordMode::Motion),
            "continuous" => Ok(RecordMode::Continuous),
            other => Err(format!(
                "record '{other}': expected off, motion or continuous"
            )),
        }
    }
}

impl fmt::Display for RecordMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordMode::Off => "off",
            RecordMode::Motion => "motion",
            RecordMode::Continuous => "continuous",
        })
    }
}

/// Why a clip was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Motion,
    Continuous,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Motion => "motion",
            Trigger::Continuous => "continuous",
        }
    }
}

/// Everything about recording and motion, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordConfig {
    pub mode: RecordMode,
    pub dir: PathBuf,
    pub pre: Duration,
    pub post: Duration,
    pub segment: Duration,
    /// The clips' total size at most; `None`: half the free space at start.
    pub max_size: Option<u64>,
    pub max_age: Option<Duration>,
    /// Free space never taken; `None`: 5 % of the file system, at most 1 GiB.
    pub min_free: Option<u64>,
    /// The card's rated endurance, terabytes written.
    pub endurance_tbw: Option<f64>,
    /// Motion detection runs (also without recording: events for viewers).
    pub motion: bool,
    /// Run on every motion event, the event as JSON on stdin.
    pub on_event: Option<String>,
}

/// A clip's name: its start (UTC) and trigger, `20261206-153012-motion`,
/// with `-N` when two start in one second. Only `[0-9a-z-]`: safe as a
/// file name and in a URL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClipId(String);

impl ClipId {
    pub fn new(start_ms: u64, trigger: Trigger, n: u32) -> Self {
        let (y, mo, d, h, mi, s) = utc(start_ms / 1000);
        let mut id = format!(
            "{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}-{}",
            trigger.as_str()
        );
        if n > 0 {
            id.push_str(&format!("-{n}"));
        }
        ClipId(id)
    }

    /// An id from a URL or a file name: `None` unless it is one we make.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = (16..=40).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'-')
            && s.as_bytes()[..8].iter().all(u8::is_ascii_digit)
            && s.as_bytes()[8] == b'-';
        ok.then(|| ClipId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClipId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Unix seconds to UTC (year, month, day, hour, minute, second), by the
/// days-from-civil algorithm run backwards (H. Hinnant).
fn utc(secs: u64) -> (u64, u64, u64, u64, u64, u64) {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_ids_name_the_utc_start_and_parse_back() {
        // 2026-12-06 15:30:12 UTC
        let id = ClipId::new(1_796_571_012_345, Trigger::Motion, 0);
        assert_eq!(id.as_str(), "20261206-153012-motion");
        assert_eq!(ClipId::parse(id.as_str()), Some(id));
        let second = ClipId::new(1_796_571_012_345, Trigger::Continuous, 2);
        assert_eq!(second.as_str(), "20261206-153012-continuous-2");
        assert_eq!(
            ClipId::new(951_782_400_000, Trigger::Motion, 0).as_str(),
            "20000229-000000-motion"
        );
        for bad in [
            "../../etc/passwd",
            "20261206-153012-Motion",
            "x",
            "2026120a-153012-motion",
            "",
        ] {
            assert_eq!(ClipId::parse(bad), None, "{bad}");
        }
    }
}
