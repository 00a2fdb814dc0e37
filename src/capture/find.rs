//! Finding the camera the supervisor asks for: what `--source` names, the
//! same camera again by its identity, or the first real camera.

use std::path::{Path, PathBuf};

use super::rpicam::{self, RpicamSource};
use super::supervise::Target;
use super::v4l2::{self, V4l2Source};
use super::{CameraId, CaptureError, Source, SourceSpec, Want};

/// The driver name a CSI camera's identity carries.
pub const CSI_DRIVER: &str = "rpicam";

/// Opens `target` for `spec`. `preferred` is the camera last in use, which
/// `auto` tries first.
pub fn open(
    spec: &SourceSpec,
    target: &Target,
    want: &Want,
    preferred: Option<&CameraId>,
) -> Result<Source, CaptureError> {
    match target {
        Target::AsGiven => as_given(spec, want, preferred),
        Target::Same(id) => same(spec, id, want),
        Target::AnyCamera => first_camera(want, preferred, true),
        Target::NewCamera => first_camera(want, preferred, false),
        Target::CameraOrPattern => first_camera(want, preferred, true).or_else(|e| {
            tracing::info!("source auto: {e}; using the test pattern");
            Source::pattern(&SourceSpec::Test, want)
        }),
    }
}

fn as_given(
    spec: &SourceSpec,
    want: &Want,
    preferred: Option<&CameraId>,
) -> Result<Source, CaptureError> {
    match spec {
        SourceSpec::Test | SourceSpec::TestStill | SourceSpec::Bars => Source::pattern(spec, want),
        SourceSpec::Device(path) => Ok(Source::V4l2(Box::new(V4l2Source::open(path, want)?))),
        SourceSpec::Rpicam(n) => csi(*n, want),
        SourceSpec::Auto => open(spec, &Target::CameraOrPattern, want, preferred),
    }
}

fn csi(index: u32, want: &Want) -> Result<Source, CaptureError> {
    Ok(Source::Rpicam(Box::new(RpicamSource::open(index, want)?)))
}

/// The camera `id` wherever it is now: a CSI camera by its number, a V4L2
/// camera under the path given (a by-id path follows it) or any node that
/// has its identity.
fn same(spec: &SourceSpec, id: &CameraId, want: &Want) -> Result<Source, CaptureError> {
    if id.driver == CSI_DRIVER {
        let index = id
            .bus
            .strip_prefix("csi:")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        return csi(index, want);
    }
    let given = match spec {
        SourceSpec::Device(p) => Some(p.clone()),
        _ => None,
    };
    for path in given.into_iter().chain(video_devices()) {
        if v4l2::identify(&path).is_ok_and(|found| id.matches(&found)) {
            return Ok(Source::V4l2(Box::new(V4l2Source::open(&path, want)?)));
        }
    }
    Err(CaptureError::Missing(describe(id)))
}

/// `auto`: a CSI camera through rpicam-vid if there is one (looked for only
/// with `look_for_csi` and while no USB camera was in use: CSI cameras are not
/// plugged in later),
/// else the camera last in use, else the first V4L2 camera that opens.
fn first_camera(
    want: &Want,
    preferred: Option<&CameraId>,
    look_for_csi: bool,
) -> Result<Source, CaptureError> {
    let mut skipped = Vec::new();
    if look_for_csi && preferred.is_none_or(|p| p.driver == CSI_DRIVER) && rpicam::tool().is_some()
    {
        // Opening lists the cameras (once: a second of CPU on a Pi) and
        // says when there is none.
        match csi(0, want) {
            Ok(source) => return Ok(source),
            Err(e) => skipped.push(format!("CSI camera 0: {e}")),
        }
    }
    if let Some(id) = preferred.filter(|p| p.driver != CSI_DRIVER)
        && let Ok(source) = same(&SourceSpec::Auto, id, want)
    {
        return Ok(source);
    }
    for path in video_devices() {
        match V4l2Source::open(&path, want) {
            Ok(s) => {
                if !skipped.is_empty() {
                    tracing::info!(
                        "source auto: {} is the first camera that works (passed over: {})",
                        path.display(),
                        skipped.join("; ")
                    );
                }
                return Ok(Source::V4l2(Box::new(s)));
            }
            Err(e) => {
                tracing::debug!("source auto: skipping {}: {e}", path.display());
                skipped.push(e.to_string());
            }
        }
    }
    if skipped.is_empty() {
        skipped.push("no /dev/video* device".into());
    }
    Err(CaptureError::NoCamera(skipped.join("; ")))
}

/// A camera as the log names it.
pub fn describe(id: &CameraId) -> String {
    match &id.by_id {
        Some(name) => format!("{} ({name})", id.card),
        None => format!("{} at {}", id.card, id.bus),
    }
}

/// `/dev/video*` in numeric order.
pub fn video_devices() -> Vec<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(Path::new("/dev"))
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    let n = name.strip_prefix("video")?.parse().ok()?;
                    Some((n, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}
