//! Publishing to SFUs by WHIP: the targets, their token and codec.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{ConfigError, invalid, within};
use crate::frame::VideoCodec;
use crate::rtc::whip::Url;

/// One `--whip` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhipTarget {
    pub url: Url,
    pub token: Option<Secret>,
    pub codec: VideoCodec,
    pub keyframe_every: Option<Duration>,
    pub trickle: bool,
}

/// A bearer token: never printed (`{:?}` of a config shows none of it).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// What the flags and the file say about WHIP.
#[derive(Debug, Default)]
pub struct WhipSettings {
    pub urls: Vec<String>,
    pub token_file: Option<PathBuf>,
    pub codec: Option<String>,
    pub keyframe_interval: Option<f64>,
    pub trickle: bool,
}

pub fn whip_targets(s: WhipSettings) -> Result<Vec<WhipTarget>, ConfigError> {
    if s.urls.is_empty() {
        return Ok(Vec::new());
    }
    let codec = match s.codec.as_deref().map(str::trim) {
        None | Some("h264") => VideoCodec::H264,
        Some("vp8") => VideoCodec::Vp8,
        Some(other) => {
            return Err(invalid(format!(
                "whip-codec '{other}': expected h264 or vp8"
            )));
        }
    };
    let keyframe_every = s
        .keyframe_interval
        .map(|secs| within("whip-keyframe-interval", secs, 0.5..=60.0))
        .transpose()?
        .map(Duration::from_secs_f64);
    let token = s.token_file.as_deref().map(read_token).transpose()?;
    s.urls
        .iter()
        .map(|u| {
            let url = Url::parse(u).map_err(|e| invalid(format!("whip: {e}")))?;
            Ok(WhipTarget {
                url,
                token: token.clone(),
                codec,
                keyframe_every,
                trickle: s.trickle,
            })
        })
        .collect()
}

/// The token: the file's first line. A file others may read is refused,
/// as the state directory's files are.
fn read_token(path: &Path) -> Result<Secret, ConfigError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| invalid(format!("whip-token-file {}: {e}", path.display())))?;
    if meta.mode() & 0o077 != 0 {
        return Err(invalid(format!(
            "whip-token-file {}: others may read it (mode {:o}); chmod 600 it",
            path.display(),
            meta.mode() & 0o777
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(format!("whip-token-file {}: {e}", path.display())))?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() || token.len() > 4096 || token.chars().any(|c| c.is_control()) {
        return Err(invalid(format!(
            "whip-token-file {}: expected one line with the token",
            path.display()
        )));
    }
    Ok(Secret(token.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn settings(urls: &[&str]) -> WhipSettings {
        WhipSettings {
            urls: urls.iter().map(|u| u.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn targets_default_to_h264_without_token_or_keyframe_interval() {
        let t = whip_targets(settings(&["http://10.0.0.2:7080/whip/endpoint/cam"])).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].codec, VideoCodec::H264);
        assert_eq!(t[0].token, None);
        assert_eq!(t[0].keyframe_every, None);
        assert!(!t[0].trickle);
        assert!(whip_targets(settings(&[])).unwrap().is_empty());
    }

    #[test]
    fn bad_values_are_named() {
        for (s, needle) in [
            (settings(&["rtmp://x/y"]), "whip: not an http"),
            (
                WhipSettings {
                    codec: Some("h265".into()),
                    ..settings(&["http://x/w"])
                },
                "whip-codec",
            ),
            (
                WhipSettings {
                    keyframe_interval: Some(0.1),
                    ..settings(&["http://x/w"])
                },
                "whip-keyframe-interval",
            ),
            (
                WhipSettings {
                    token_file: Some("/nonexistent/token".into()),
                    ..settings(&["http://x/w"])
                },
                "whip-token-file",
            ),
        ] {
            let err = whip_targets(s).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn the_token_file_must_be_private_and_is_never_printed() {
        let dir = std::env::temp_dir().join(format!("rtcam-whip-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "s3cret-token\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let open = WhipSettings {
            token_file: Some(file.clone()),
            ..settings(&["https://sfu.example/whip"])
        };
        let err = whip_targets(open).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let t = whip_targets(WhipSettings {
            token_file: Some(file),
            ..settings(&["https://sfu.example/whip"])
        })
        .unwrap();
        assert_eq!(t[0].token, Some(Secret("s3cret-token".into())));
        assert!(!format!("{t:?}").contains("s3cret"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
