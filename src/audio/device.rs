//! ALSA devices: which one `auto` means, and opening one at 48 kHz mono
//! S16 with short periods. Non-blocking, so a stalled or vanished device
//! costs its thread a bounded wait, never a hang.

use std::time::Duration;

use alsa::pcm::{Access, Format, HwParams, PCM};
use alsa::{Direction, ValueOr};
use thiserror::Error;

use super::RATE;

/// One ALSA period: 10 ms. The microphone reads two per Opus frame; the
/// speaker keeps a few queued.
pub const PERIOD: usize = 480;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DeviceError {
    #[error("cannot open {device}: {why}")]
    Open { device: String, why: String },
    #[error("{device} does not take 48 kHz mono 16-bit audio: {why}")]
    Format { device: String, why: String },
    #[error("{device} stopped answering for {0:?}", STALL)]
    Stalled { device: String },
    #[error("{device} failed: {why}")]
    Io { device: String, why: String },
}

/// How long a device may give or take nothing before it counts as stalled
/// (a PulseAudio stream's first seconds can stall for 1.7 s).
pub const STALL: Duration = Duration::from_secs(4);

/// The first device for `direction` that is not HDMI (monitors' sound has
/// no microphone and is not where a talker wants to be heard), by ALSA's
/// device hints: `plughw:` names, which convert rate and format.
pub fn auto(direction: Direction) -> Option<String> {
    // A card without this direction (a playback-only headphone jack)
    // refuses to open it.
    listed(direction)
        .into_iter()
        .find(|d| !is_hdmi(&d.name, &d.description) && PCM::new(&d.name, direction, true).is_ok())
        .map(|d| d.name)
}

/// A sound device ALSA lists, for `/api/status` and the owner choosing one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Listed {
    /// The name to give `--audio-in` or `--audio-out`.
    pub name: String,
    /// ALSA's description, first line ("USB PnP Sound Device, USB Audio").
    pub description: String,
}

/// The `plughw:` devices ALSA's hints list for `direction` (each card's
/// devices once, converting rate and format).
pub fn listed(direction: Direction) -> Vec<Listed> {
    let Ok(hints) = alsa::device_name::HintIter::new_str(None, "pcm") else {
        return Vec::new();
    };
    hints
        .filter(|h| h.direction.is_none_or(|d| d == direction))
        .filter_map(|h| {
            let name = h.name.filter(|n| n.starts_with("plughw:"))?;
            let description = h.desc.unwrap_or_default().lines().next()?.to_string();
            Some(Listed { name, description })
        })
        .take(32)
        .collect()
}

fn is_hdmi(name: &str, desc: &str) -> bool {
    let text = format!("{name} {desc}").to_ascii_lowercase();
    text.contains("hdmi") || text.contains("vc4hdmi") || text.contains("displayport")
}

/// Opens `device` for `direction`: 48 kHz, mono, S16, periods of
/// [`PERIOD`], a buffer of `periods` of them.
pub fn open(device: &str, direction: Direction, periods: usize) -> Result<PCM, DeviceError> {
    let pcm = PCM::new(device, direction, true).map_err(|e| DeviceError::Open {
        device: device.into(),
        why: describe(&e),
    })?;
    let format = |e: alsa::Error| DeviceError::Format {
        device: device.into(),
        why: describe(&e),
    };
    {
        let hw = HwParams::any(&pcm).map_err(format)?;
        hw.set_access(Access::RWInterleaved).map_err(format)?;
        hw.set_format(Format::s16()).map_err(format)?;
        hw.set_channels(1).map_err(format)?;
        hw.set_rate(RATE, ValueOr::Nearest).map_err(format)?;
        hw.set_period_size_near(PERIOD as alsa::pcm::Frames, ValueOr::Nearest)
            .map_err(format)?;
        hw.set_buffer_size_near((PERIOD * periods) as alsa::pcm::Frames)
            .map_err(format)?;
        pcm.hw_params(&hw).map_err(format)?;
    }
    {
        let sw = pcm.sw_params_current().map_err(format)?;
        sw.set_avail_min(PERIOD as alsa::pcm::Frames)
            .map_err(format)?;
        if direction == Direction::Playback {
            // Start playing once two periods are queued: short, yet one
            // late write does not underrun at once.
            sw.set_start_threshold(2 * PERIOD as alsa::pcm::Frames)
                .map_err(format)?;
        }
        pcm.sw_params(&sw).map_err(format)?;
    }
    Ok(pcm)
}

/// An ALSA error as a person reads it: "No such device (ENODEV)".
pub fn describe(e: &alsa::Error) -> String {
    let errno = e.errno();
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    // "No such file or directory (os error 2)" -> without the number.
    text.split(" (os error").next().unwrap_or(&text).to_string()
}

/// Frames still queued in the device: captured but not read, or written
/// but not yet played (the delay ALSA reports).
pub fn queued(pcm: &PCM) -> usize {
    pcm.delay().map_or(0, |d| d.max(0) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hdmi_devices_are_not_chosen() {
        assert!(is_hdmi("plughw:CARD=vc4hdmi0,DEV=0", "vc4-hdmi-0"));
        assert!(is_hdmi("plughw:CARD=PCH,DEV=3", "HDA Intel PCH, HDMI 0"));
        assert!(!is_hdmi("plughw:CARD=Device,DEV=0", "USB PnP Sound Device"));
    }

    #[test]
    fn a_missing_device_is_a_clear_error() {
        let e = open("hw:CARD=NoSuchCard,DEV=0", Direction::Capture, 4).unwrap_err();
        let DeviceError::Open { device, why } = &e else {
            panic!("{e}")
        };
        assert_eq!(device, "hw:CARD=NoSuchCard,DEV=0");
        assert!(!why.is_empty());
    }
}
