//! Recording and motion: the flags, the file's keys, and their checks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use super::{ConfigError, OnOff, invalid, within};
use crate::record::{RecordConfig, RecordMode};

#[derive(Debug, Default, Args)]
pub struct RecordFlags {
    /// Record clips on the device: on motion (with a pre-roll), all the
    /// time, or not [default: off]
    #[arg(long, value_name = "off|motion|continuous")]
    pub record: Option<RecordMode>,
    /// Where clips go; a folder that is not there (a USB disk not mounted)
    /// stops recording until it is [default: recordings/ in the state dir]
    #[arg(long, value_name = "DIR")]
    pub record_dir: Option<PathBuf>,
    /// Seconds kept before the motion [default: 5]
    #[arg(long, value_name = "SECONDS")]
    pub record_pre: Option<f64>,
    /// Seconds recorded after the motion ended [default: 10]
    #[arg(long, value_name = "SECONDS")]
    pub record_post: Option<f64>,
    /// A long clip is cut into files of about this length [default: 300]
    #[arg(long, value_name = "SECONDS")]
    pub record_segment: Option<f64>,
    /// The clips' total size at most (500M, 4G...) [default: half the free
    /// space at start]
    #[arg(long, value_name = "SIZE")]
    pub record_max_size: Option<String>,
    /// Clips older than this go (12h, 7d...) [default: none]
    #[arg(long, value_name = "AGE")]
    pub record_max_age: Option<String>,
    /// Free space recording never takes [default: 5 % of the disk, at most 1G]
    #[arg(long, value_name = "SIZE")]
    pub record_min_free: Option<String>,
    /// The card's rated endurance in terabytes written, to project its wear
    #[arg(long, value_name = "TB")]
    pub record_endurance_tbw: Option<f64>,
    /// Motion detection: events for viewers and the hook, and what
    /// `--record motion` records [default: on]
    #[arg(long, value_name = "on|off")]
    pub motion: Option<OnOff>,
    /// Run on every motion event, the event as JSON on its standard input
    /// (through sh -c, killed after 10 s)
    #[arg(long, value_name = "COMMAND")]
    pub on_event: Option<String>,
}

/// The same in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RecordFile {
    pub record: Option<String>,
    pub record_dir: Option<PathBuf>,
    pub record_pre: Option<f64>,
    pub record_post: Option<f64>,
    pub record_segment: Option<f64>,
    pub record_max_size: Option<String>,
    pub record_max_age: Option<String>,
    pub record_min_free: Option<String>,
    pub record_endurance_tbw: Option<f64>,
    pub motion: Option<bool>,
    pub on_event: Option<String>,
}

pub fn record_config(
    flags: RecordFlags,
    file: RecordFile,
    state_dir: &Path,
) -> Result<RecordConfig, ConfigError> {
    let mode = match (flags.record, file.record) {
        (Some(m), _) => m,
        (None, Some(s)) => s.parse().map_err(invalid)?,
        (None, None) => RecordMode::Off,
    };
    let secs = |name: &str, v: Option<f64>, default: f64, range| {
        within(name, v.unwrap_or(default), range).map(Duration::from_secs_f64)
    };
    let size = |name: &str, v: Option<String>| v.map(|s| parse_size(name, &s)).transpose();
    Ok(RecordConfig {
        mode,
        dir: flags
            .record_dir
            .or(file.record_dir)
            .unwrap_or_else(|| state_dir.join("recordings")),
        pre: secs(
            "record-pre",
            flags.record_pre.or(file.record_pre),
            5.0,
            0.0..=30.0,
        )?,
        post: secs(
            "record-post",
            flags.record_post.or(file.record_post),
            10.0,
            0.0..=600.0,
        )?,
        segment: secs(
            "record-segment",
            flags.record_segment.or(file.record_segment),
            300.0,
            2.0..=3600.0,
        )?,
        max_size: size(
            "record-max-size",
            flags.record_max_size.or(file.record_max_size),
        )?,
        max_age: flags
            .record_max_age
            .or(file.record_max_age)
            .map(|s| parse_age(&s))
            .transpose()?,
        min_free: size(
            "record-min-free",
            flags.record_min_free.or(file.record_min_free),
        )?,
        endurance_tbw: flags
            .record_endurance_tbw
            .or(file.record_endurance_tbw)
            .map(|t| within("record-endurance-tbw", t, 0.001..=100_000.0))
            .transpose()?,
        motion: match flags.motion {
            Some(v) => v == OnOff::On,
            None => file.motion.unwrap_or(true),
        },
        on_event: flags
            .on_event
            .or(file.on_event)
            .filter(|c| !c.trim().is_empty()),
    })
}

/// `500M`, `4G`, `1.5T`, `800K` or bytes.
fn parse_size(name: &str, s: &str) -> Result<u64, ConfigError> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let scale: f64 = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 1.0,
        "K" => 1024.0,
        "M" => 1024.0 * 1024.0,
        "G" => 1024.0 * 1024.0 * 1024.0,
        "T" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(invalid(format!("{name} '{s}': a size such as 500M or 4G"))),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| invalid(format!("{name} '{s}': a size such as 500M or 4G")))?;
    if !(n.is_finite() && n > 0.0) {
        return Err(invalid(format!("{name} '{s}': above zero")));
    }
    Ok((n * scale) as u64)
}

/// `90s`, `30m`, `12h`, `7d` or seconds.
fn parse_age(s: &str) -> Result<Duration, ConfigError> {
    let t = s.trim();
    let (num, scale) = match t.chars().last() {
        Some('s') => (&t[..t.len() - 1], 1.0),
        Some('m') => (&t[..t.len() - 1], 60.0),
        Some('h') => (&t[..t.len() - 1], 3600.0),
        Some('d') => (&t[..t.len() - 1], 86_400.0),
        _ => (t, 1.0),
    };
    let n: f64 = num
        .trim()
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n > 0.0)
        .ok_or_else(|| invalid(format!("record-max-age '{s}': an age such as 12h or 7d")))?;
    Ok(Duration::from_secs_f64(n * scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ages_parse() {
        assert_eq!(parse_size("x", "500M").unwrap(), 500 << 20);
        assert_eq!(parse_size("x", "1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("x", "4GiB").unwrap(), 4 << 30);
        assert_eq!(parse_size("x", "1234").unwrap(), 1234);
        assert!(parse_size("x", "lots").is_err());
        assert!(parse_size("x", "-5M").is_err());
        assert_eq!(parse_age("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert_eq!(parse_age("90").unwrap(), Duration::from_secs(90));
        assert!(parse_age("soon").is_err());
    }

    #[test]
    fn recording_is_off_by_default_and_motion_on() {
        let c = record_config(
            RecordFlags::default(),
            RecordFile::default(),
            Path::new("/s"),
        )
        .unwrap();
        assert_eq!(c.mode, RecordMode::Off);
        assert!(c.motion);
        assert_eq!(c.dir, Path::new("/s/recordings"));
        assert_eq!(c.pre, Duration::from_secs(5));
        let flags = RecordFlags {
            record: Some(RecordMode::Motion),
            record_pre: Some(45.0),
            ..RecordFlags::default()
        };
        assert!(record_config(flags, RecordFile::default(), Path::new("/s")).is_err());
    }
}
