//! The camera's settings as viewers see them: what a source offers
//! (brightness, exposure, white balance, ...), with ranges, steps, menus and
//! current values, and the check a value passes before it reaches the
//! driver. Sources list their controls and apply values (V4L2 through
//! `VIDIOC_S_EXT_CTRLS`, rpicam-vid by restarting it with options, the test
//! scene in software); the capture thread keeps the values a viewer set in
//! the state directory ([`Saved`]) and applies them when the camera opens.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// One setting of the camera.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CameraControl {
    /// A stable key, e.g. `brightness`, `white_balance_temperature`.
    pub id: String,
    /// What the driver calls it, e.g. "White Balance Temperature".
    pub name: String,
    #[serde(flatten)]
    pub kind: ControlKind,
    pub default: i64,
    pub value: i64,
    /// Setting it restarts the camera (rpicam-vid takes options only when
    /// it starts): about a second without new frames.
    pub restarts: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ControlKind {
    Integer { min: i64, max: i64, step: i64 },
    Boolean,
    Menu { items: Vec<MenuItem> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MenuItem {
    pub value: i64,
    pub label: String,
}

/// Why a value was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlError {
    /// The camera has no such control.
    Unknown(String),
    /// Outside the range, off its step, or not one of the menu's items.
    OutOfRange { id: String, value: i64 },
    /// The driver refused it (e.g. a manual exposure while auto is on).
    Failed { id: String, why: String },
}

impl ControlError {
    /// A short machine-readable reason (the data channel's `reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            ControlError::Unknown(_) => "unknown_control",
            ControlError::OutOfRange { .. } => "out_of_range",
            ControlError::Failed { .. } => "control_failed",
        }
    }
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::Unknown(id) => write!(f, "the camera has no control \"{id}\""),
            ControlError::OutOfRange { id, value } => {
                write!(f, "{value} is not a value {id} takes")
            }
            ControlError::Failed { id, why } => write!(f, "the camera refused {id}: {why}"),
        }
    }
}

impl std::error::Error for ControlError {}

impl CameraControl {
    /// `value` if this control takes it.
    pub fn check(&self, value: i64) -> Result<i64, ControlError> {
        let ok = match &self.kind {
            ControlKind::Integer { min, max, step } => {
                let off = i128::from(value) - i128::from(*min);
                (*min..=*max).contains(&value) && off % i128::from((*step).max(1)) == 0
            }
            ControlKind::Boolean => value == 0 || value == 1,
            ControlKind::Menu { items } => items.iter().any(|i| i.value == value),
        };
        if ok {
            Ok(value)
        } else {
            Err(ControlError::OutOfRange {
                id: self.id.clone(),
                value,
            })
        }
    }
}

/// Finds `id` in `controls` and checks `value` against it.
pub fn check(controls: &[CameraControl], id: &str, value: i64) -> Result<i64, ControlError> {
    controls
        .iter()
        .find(|c| c.id == id)
        .ok_or_else(|| ControlError::Unknown(id.chars().take(32).collect()))?
        .check(value)
}

/// The values viewers set, per camera, kept in `controls.json` in the
/// state directory so that they survive a restart and a replugged camera.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    /// Camera key (driver and card) to control id to value.
    cameras: BTreeMap<String, BTreeMap<String, i64>>,
    #[serde(skip)]
    path: Option<PathBuf>,
    /// Changed since the file was last written.
    #[serde(skip)]
    dirty: bool,
    #[serde(skip)]
    written: Option<Instant>,
    /// A write failed (told once).
    #[serde(skip)]
    failed: bool,
}

/// Controls kept for one camera at most (a corrupt or hostile file cannot
/// make the capture thread apply thousands).
const MAX_SAVED: usize = 64;

impl Saved {
    /// The file in `state_dir`; a missing or unreadable file is no values
    /// (logged), never an error that stops the camera.
    pub fn load(state_dir: &Path) -> Saved {
        let path = state_dir.join("controls.json");
        let mut saved = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Saved>(&bytes).unwrap_or_else(|e| {
                tracing::warn!(
                    "{}: not camera settings ({e}); starting afresh",
                    path.display()
                );
                Saved::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Saved::default(),
            Err(e) => {
                tracing::warn!("{}: {e}; camera settings not restored", path.display());
                Saved::default()
            }
        };
        saved.path = Some(path);
        saved
    }

    /// What was set for `camera`, in id order.
    pub fn values(&self, camera: &str) -> Vec<(String, i64)> {
        self.cameras
            .get(camera)
            .map(|m| {
                m.iter()
                    .take(MAX_SAVED)
                    .map(|(k, v)| (k.clone(), *v))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Remembers `id = value` for `camera`; the file is written by
    /// [`Saved::write_if_due`] (a slider drag writes it once, not per step:
    /// each write is fsynced, and flash wears).
    pub fn remember(&mut self, camera: &str, id: &str, value: i64) {
        let values = self.cameras.entry(camera.to_string()).or_default();
        if values.len() >= MAX_SAVED && !values.contains_key(id) {
            return;
        }
        if values.insert(id.to_string(), value) != Some(value) {
            self.dirty = true;
        }
    }

    /// Writes the file (atomically, private) if something changed and the
    /// last write is [`WRITE_EVERY`] ago. A write that fails is logged once:
    /// the settings still hold until the next restart.
    pub fn write_if_due(&mut self, now: Instant) {
        if !self.dirty || self.written.is_some_and(|t| now < t + WRITE_EVERY) {
            return;
        }
        self.write(now);
    }

    /// Writes what changed now (at shutdown).
    pub fn write_now(&mut self) {
        if self.dirty {
            self.write(Instant::now());
        }
    }

    fn write(&mut self, now: Instant) {
        self.dirty = false;
        self.written = Some(now);
        let Some(path) = &self.path else { return };
        let json = serde_json::to_vec_pretty(self).unwrap_or_default();
        if let Err(e) = crate::state_dir::write_private(path, &json) {
            if !self.failed {
                tracing::warn!("{}: {e}; camera settings are not kept", path.display());
            }
            self.failed = true;
        }
    }
}

/// The least time between two writes of `controls.json`.
pub const WRITE_EVERY: Duration = Duration::from_secs(2);

/// `batch` in the order a camera takes it: automatic modes first, so that
/// a manual exposure, focus or gain comes after the switch to manual that
/// it needs (a UVC camera refuses an inactive control).
pub fn in_apply_order(batch: &mut [(String, i64)]) {
    batch.sort_by_key(|(id, _)| !id.ends_with("_auto"));
}

/// The test scene's settings, applied in software like a camera's ISP
/// would: brightness as an offset to luma (below the timestamp stripe, so
/// every frame still carries its stamp), contrast as a gain about mid-grey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SceneLook {
    pub brightness: i64,
    pub contrast: i64,
}

impl Default for SceneLook {
    fn default() -> Self {
        SceneLook {
            brightness: 128,
            contrast: 128,
        }
    }
}

impl SceneLook {
    pub fn controls(&self) -> Vec<CameraControl> {
        let int = |id: &str, name: &str, value| CameraControl {
            id: id.into(),
            name: name.into(),
            kind: ControlKind::Integer {
                min: 0,
                max: 255,
                step: 1,
            },
            default: 128,
            value,
            restarts: false,
        };
        vec![
            int("brightness", "Brightness", self.brightness),
            int("contrast", "Contrast", self.contrast),
        ]
    }

    pub fn set(&mut self, id: &str, value: i64) -> Result<(), ControlError> {
        let value = check(&self.controls(), id, value)?;
        match id {
            "brightness" => self.brightness = value,
            _ => self.contrast = value,
        }
        Ok(())
    }

    pub fn is_default(&self) -> bool {
        *self == SceneLook::default()
    }

    /// The luma mapping: `out = 128 + (in - 128) * contrast / 128 +
    /// (brightness - 128)`, clamped to the limited range.
    pub fn table(&self) -> [u8; 256] {
        let mut t = [0u8; 256];
        for (i, out) in t.iter_mut().enumerate() {
            let v = 128 + (i as i64 - 128) * self.contrast / 128 + (self.brightness - 128);
            *out = v.clamp(16, 235) as u8;
        }
        t
    }
}

/// V4L2 control ids rtcam offers viewers (`linux/v4l2-controls.h`), with
/// their keys: the image, exposure, white balance, gain, focus, zoom,
/// pan/tilt and power-line controls of the user and camera classes. Others
/// (a driver's test controls, buttons, compound controls) are left out.
pub const V4L2_CONTROLS: &[(u32, &str)] = &[
    (0x0098_0900, "brightness"),
    (0x0098_0901, "contrast"),
    (0x0098_0902, "saturation"),
    (0x0098_0903, "hue"),
    (0x0098_090c, "white_balance_auto"),
    (0x0098_0910, "gamma"),
    (0x0098_0912, "gain_auto"),
    (0x0098_0913, "gain"),
    (0x0098_0918, "power_line_frequency"),
    (0x0098_091a, "white_balance_temperature"),
    (0x0098_091b, "sharpness"),
    (0x0098_091c, "backlight_compensation"),
    (0x009a_0901, "exposure_auto"),
    (0x009a_0902, "exposure_absolute"),
    (0x009a_0903, "exposure_auto_priority"),
    (0x009a_0908, "pan_absolute"),
    (0x009a_0909, "tilt_absolute"),
    (0x009a_090a, "focus_absolute"),
    (0x009a_090c, "focus_auto"),
    (0x009a_090d, "zoom_absolute"),
];

/// The key of V4L2 control `cid`, if rtcam offers it.
pub fn v4l2_key(cid: u32) -> Option<&'static str> {
    V4L2_CONTROLS
        .iter()
        .find(|(c, _)| *c == cid)
        .map(|(_, k)| *k)
}

/// The V4L2 control id of `key`.
pub fn v4l2_cid(key: &str) -> Option<u32> {
    V4L2_CONTROLS
        .iter()
        .find(|(_, k)| *k == key)
        .map(|(c, _)| *c)
}

/// rpicam-vid's image options, as integer controls (its float options in
/// hundredths; `shutter` in microseconds and `gain` with 0 for automatic):
/// id, name, option, min, max, step, default, the option's value scale.
pub const RPICAM_OPTIONS: &[RpicamOption] = &[
    RpicamOption::int(
        "brightness",
        "Brightness",
        "--brightness",
        (-100, 100, 1, 0),
        100,
    ),
    RpicamOption::int("contrast", "Contrast", "--contrast", (0, 400, 5, 100), 100),
    RpicamOption::int(
        "saturation",
        "Saturation",
        "--saturation",
        (0, 400, 5, 100),
        100,
    ),
    RpicamOption::int(
        "sharpness",
        "Sharpness",
        "--sharpness",
        (0, 400, 5, 100),
        100,
    ),
    RpicamOption::int(
        "ev",
        "Exposure compensation",
        "--ev",
        (-1000, 1000, 25, 0),
        100,
    ),
    RpicamOption::int(
        "shutter",
        "Shutter (µs, 0 = auto)",
        "--shutter",
        (0, 1_000_000, 100, 0),
        1,
    ),
    RpicamOption::int("gain", "Gain (0 = auto)", "--gain", (0, 1600, 10, 0), 100),
    RpicamOption::menu(
        "awb",
        "White balance",
        "--awb",
        &[
            "auto",
            "incandescent",
            "tungsten",
            "fluorescent",
            "indoor",
            "daylight",
            "cloudy",
        ],
    ),
    RpicamOption::menu(
        "denoise",
        "Denoise",
        "--denoise",
        &["auto", "off", "cdn_off", "cdn_fast", "cdn_hq"],
    ),
];

#[derive(Debug)]
pub struct RpicamOption {
    pub id: &'static str,
    pub name: &'static str,
    pub option: &'static str,
    /// Integer: (min, max, step, default); a menu: (0, items - 1, 1, 0).
    pub range: (i64, i64, i64, i64),
    /// The option's value is the control's value divided by this.
    pub scale: i64,
    /// A menu's words (empty for an integer).
    pub words: &'static [&'static str],
}

impl RpicamOption {
    const fn int(
        id: &'static str,
        name: &'static str,
        option: &'static str,
        range: (i64, i64, i64, i64),
        scale: i64,
    ) -> Self {
        RpicamOption {
            id,
            name,
            option,
            range,
            scale,
            words: &[],
        }
    }

    const fn menu(
        id: &'static str,
        name: &'static str,
        option: &'static str,
        words: &'static [&'static str],
    ) -> Self {
        RpicamOption {
            id,
            name,
            option,
            range: (0, words.len() as i64 - 1, 1, 0),
            scale: 1,
            words,
        }
    }

    pub fn control(&self, value: i64) -> CameraControl {
        let (min, max, step, default) = self.range;
        let kind = if self.words.is_empty() {
            ControlKind::Integer { min, max, step }
        } else {
            ControlKind::Menu {
                items: (0..)
                    .zip(self.words)
                    .map(|(value, w)| MenuItem {
                        value,
                        label: (*w).into(),
                    })
                    .collect(),
            }
        };
        CameraControl {
            id: self.id.into(),
            name: self.name.into(),
            kind,
            default,
            value,
            restarts: true,
        }
    }

    /// The command-line arguments for `value` (none at the default: the
    /// camera's own tuning then decides).
    pub fn args(&self, value: i64) -> Option<[String; 2]> {
        if value == self.range.3 {
            return None;
        }
        let text = match self.words.get(value as usize) {
            Some(word) if !self.words.is_empty() => (*word).to_string(),
            _ if self.scale == 1 => value.to_string(),
            _ => format!("{}", value as f64 / self.scale as f64),
        };
        Some([self.option.to_string(), text])
    }
}

/// rpicam-vid's options as controls, with `values` set (others at their
/// defaults).
pub fn rpicam_controls(values: &BTreeMap<String, i64>) -> Vec<CameraControl> {
    RPICAM_OPTIONS
        .iter()
        .map(|o| o.control(values.get(o.id).copied().unwrap_or(o.range.3)))
        .collect()
}

/// The extra rpicam-vid arguments for `values`.
pub fn rpicam_args(values: &BTreeMap<String, i64>) -> Vec<String> {
    RPICAM_OPTIONS
        .iter()
        .filter_map(|o| o.args(*values.get(o.id)?))
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_against_range_step_and_menu() {
        let scene = SceneLook::default().controls();
        assert_eq!(check(&scene, "brightness", 200), Ok(200));
        assert_eq!(
            check(&scene, "brightness", 256).unwrap_err().reason(),
            "out_of_range"
        );
        assert_eq!(
            check(&scene, "zoom", 1).unwrap_err().reason(),
            "unknown_control"
        );
        let rp = rpicam_controls(&BTreeMap::new());
        assert_eq!(check(&rp, "contrast", 105), Ok(105));
        assert!(check(&rp, "contrast", 103).is_err(), "off the step");
        assert_eq!(check(&rp, "awb", 6), Ok(6));
        assert!(check(&rp, "awb", 7).is_err());
        let boolean = CameraControl {
            id: "focus_auto".into(),
            name: "Focus, Auto".into(),
            kind: ControlKind::Boolean,
            default: 1,
            value: 1,
            restarts: false,
        };
        assert!(boolean.check(0).is_ok() && boolean.check(2).is_err());
    }

    #[test]
    fn automatic_modes_are_applied_before_the_values_they_unlock() {
        let mut batch: Vec<(String, i64)> = ["exposure_absolute", "brightness", "exposure_auto"]
            .iter()
            .map(|id| (id.to_string(), 1))
            .collect();
        in_apply_order(&mut batch);
        let ids: Vec<&str> = batch.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["exposure_auto", "exposure_absolute", "brightness"]);
    }

    #[test]
    fn rpicam_options_become_arguments_except_at_their_defaults() {
        let values: BTreeMap<String, i64> = [
            ("brightness".to_string(), -25),
            ("contrast".to_string(), 100),
            ("awb".to_string(), 5),
            ("shutter".to_string(), 20_000),
        ]
        .into();
        assert_eq!(
            rpicam_args(&values),
            [
                "--brightness",
                "-0.25",
                "--shutter",
                "20000",
                "--awb",
                "daylight"
            ]
        );
        let controls = rpicam_controls(&values);
        assert!(controls.iter().all(|c| c.restarts));
        assert_eq!(controls[0].value, -25);
    }

    #[test]
    fn the_scene_look_keeps_black_and_white_in_range() {
        let mut look = SceneLook::default();
        assert_eq!(look.table()[100], 100, "the default changes nothing");
        look.set("brightness", 255).unwrap();
        assert_eq!(look.table()[128], 235);
        look.set("brightness", 0).unwrap();
        look.set("contrast", 255).unwrap();
        assert_eq!(look.table()[16], 16);
        assert!(look.set("contrast", -1).is_err());
    }

    #[test]
    fn saved_values_survive_a_reload_and_a_bad_file_is_no_values() {
        let dir = std::env::temp_dir().join(format!("rtcam-controls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut saved = Saved::load(&dir);
        assert!(saved.values("vivid").is_empty());
        let t0 = Instant::now();
        saved.remember("vivid", "brightness", 200);
        saved.write_if_due(t0);
        saved.remember("vivid", "contrast", 10);
        saved.remember("other", "brightness", 1);
        saved.write_if_due(t0 + Duration::from_secs(1));
        assert_eq!(
            Saved::load(&dir).values("vivid").len(),
            1,
            "not yet: one write in 2 s"
        );
        saved.write_if_due(t0 + WRITE_EVERY);
        let again = Saved::load(&dir);
        assert_eq!(
            again.values("vivid"),
            [
                ("brightness".to_string(), 200),
                ("contrast".to_string(), 10)
            ]
        );
        std::fs::write(dir.join("controls.json"), b"{not json").unwrap();
        assert!(Saved::load(&dir).values("vivid").is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
