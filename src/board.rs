//! Board profiles (`board/*.toml`, embedded at build time): the defaults that
//! differ per board — capture size and rate, bitrate, viewers, encoder
//! threads, serial port, memory ceiling. Chosen with `--board NAME`, or
//! detected from the device tree's model string. The config file and flags
//! still win over a profile.

use serde::Deserialize;

const BOARDS: &[(&str, &str)] = &[
    ("pi-zero-2w", include_str!("../board/pi-zero-2w.toml")),
    ("pi-3", include_str!("../board/pi-3.toml")),
    ("pi-4", include_str!("../board/pi-4.toml")),
    ("pi-5", include_str!("../board/pi-5.toml")),
    (
        "generic-x86_64",
        include_str!("../board/generic-x86_64.toml"),
    ),
    ("generic-arm", include_str!("../board/generic-arm.toml")),
    ("qemu-virt", include_str!("../board/qemu-virt.toml")),
];

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Board {
    #[serde(skip)]
    pub name: String,
    pub description: String,
    /// Substrings of the device tree model that mean this board.
    pub model_match: Vec<String>,
    pub source: Option<String>,
    pub size: Option<String>,
    pub fps: Option<u32>,
    pub bitrate: Option<u32>,
    pub max_viewers: Option<usize>,
    pub encoder_threads: u16,
    /// The V4L2 memory-to-memory H.264 encoder, where the board has one.
    pub hardware_encoder: Option<String>,
    /// The largest picture software VP8 keeps up with on this board.
    pub vp8_size: Option<String>,
    /// The UART a pan/tilt head would use.
    pub serial_port: Option<String>,
    /// The ceiling the packaged service runs under (systemd MemoryMax=).
    pub memory_max: Option<String>,
    /// Its sound devices (ALSA PCM names, or auto/off/test) and echo mode.
    pub audio_in: Option<String>,
    pub audio_out: Option<String>,
    pub echo: Option<String>,
}

pub fn names() -> impl Iterator<Item = &'static str> {
    BOARDS.iter().map(|(n, _)| *n)
}

pub fn by_name(name: &str) -> Result<Board, String> {
    let (n, text) = BOARDS.iter().find(|(n, _)| *n == name).ok_or_else(|| {
        format!(
            "unknown board '{name}': expected auto or one of {}",
            names().collect::<Vec<_>>().join(", ")
        )
    })?;
    let mut board: Board =
        toml::from_str(text).map_err(|e| format!("board profile {n} is broken: {e}"))?;
    board.name = n.to_string();
    Ok(board)
}

/// The profile for this device tree model (and CPU architecture). The
/// second value is a warning when the board is not one we know.
pub fn detect(model: Option<&str>, arch: &str) -> (Board, Option<String>) {
    if let Some(model) = model {
        for name in names() {
            let Ok(board) = by_name(name) else { continue };
            if board.model_match.iter().any(|m| model.contains(m.as_str())) {
                return (board, None);
            }
        }
    }
    let generic = if arch == "x86_64" {
        "generic-x86_64"
    } else {
        "generic-arm"
    };
    let board = by_name(generic).expect("generic profiles are valid");
    let warning = match (model, arch) {
        (None, "x86_64") => None,
        (Some(m), _) => Some(format!("unknown board '{m}': using the {generic} profile")),
        (None, _) => Some(format!("no device tree model: using the {generic} profile")),
    };
    (board, warning)
}

/// The device tree's model string, when there is one.
pub fn read_model() -> Option<String> {
    [
        "/sys/firmware/devicetree/base/model",
        "/proc/device-tree/model",
    ]
    .iter()
    .find_map(|p| std::fs::read(p).ok())
    .map(|b| {
        String::from_utf8_lossy(&b)
            .trim_end_matches('\0')
            .trim()
            .to_string()
    })
    .filter(|m| !m.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_parses() {
        for name in names() {
            let b = by_name(name).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(b.name, name);
            assert!(b.encoder_threads >= 1);
            if let Some(size) = &b.size {
                size.parse::<crate::config::Size>().expect("valid size");
            }
            if let Some(source) = &b.source {
                source
                    .parse::<crate::capture::SourceSpec>()
                    .expect("valid source");
            }
            // Every profile says how it keeps the echo out (README "Audio").
            let echo = b.echo.as_deref().expect("an echo mode");
            echo.parse::<crate::audio::EchoMode>().expect("valid echo");
        }
        assert!(by_name("pi-9").unwrap_err().contains("pi-zero-2w"));
    }

    #[test]
    fn detection_from_device_tree_models() {
        let cases = [
            ("Raspberry Pi Zero 2 W Rev 1.0", "pi-zero-2w"),
            ("Raspberry Pi 3 Model B Plus Rev 1.3", "pi-3"),
            ("Raspberry Pi 4 Model B Rev 1.4", "pi-4"),
            ("Raspberry Pi Compute Module 4 Rev 1.0", "pi-4"),
            ("Raspberry Pi 5 Model B Rev 1.0", "pi-5"),
            ("linux,dummy-virt", "qemu-virt"),
        ];
        for (model, want) in cases {
            let (b, warn) = detect(Some(model), "aarch64");
            assert_eq!(b.name, want, "{model}");
            assert!(warn.is_none());
        }
        let (b, warn) = detect(Some("Pine64 RockPro64"), "aarch64");
        assert_eq!(b.name, "generic-arm");
        assert!(warn.unwrap().contains("RockPro64"));
        let (b, warn) = detect(None, "x86_64");
        assert_eq!(b.name, "generic-x86_64");
        assert!(
            warn.is_none(),
            "a PC has no device tree: nothing to warn about"
        );
        let (b, _) = detect(Some("Raspberry Pi 5 Model B"), "x86_64");
        assert_eq!(b.name, "pi-5");
    }

    #[test]
    fn pi5_has_no_hardware_encoder() {
        assert_eq!(by_name("pi-5").unwrap().hardware_encoder, None);
        assert!(by_name("pi-4").unwrap().hardware_encoder.is_some());
    }
}
