//! Which device a node is (the identity a replugged camera is found by
//! again), and its controls as rtcam describes them.

use super::*;

/// Drivers whose capture nodes are parts of the Pi's camera and codec
/// system, not cameras: the ISP and the codecs (which `auto` must not pick
/// up as a webcam), and the CSI receivers that give raw Bayer (a CSI camera
/// is read through rpicam-vid).
pub(super) const NOT_CAMERAS: [&str; 7] = [
    "bcm2835-isp",
    "bcm2835-codec",
    "unicam",
    "rp1-cfe",
    "pispbe",
    "rpivid",
    "rpi-hevc-dec",
];

/// The camera at `path`, without opening a stream: what the supervisor
/// matches a returning camera against.
pub fn identify(path: &Path) -> Result<CameraId, CaptureError> {
    let device = Device::with_path(path).map_err(|source| CaptureError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let caps = device.query_caps().map_err(|source| CaptureError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(identity_of(path, &caps))
}

pub(super) fn identity_of(path: &Path, caps: &v4l::capability::Capabilities) -> CameraId {
    CameraId {
        driver: caps.driver.clone(),
        card: caps.card.clone(),
        bus: caps.bus.clone(),
        by_id: by_id_name(path),
    }
}

/// The `/dev/v4l/by-id/` link that points at `path`, if udev made one.
pub(super) fn by_id_name(path: &Path) -> Option<String> {
    let node = std::fs::canonicalize(path).ok()?;
    std::fs::read_dir("/dev/v4l/by-id")
        .ok()?
        .filter_map(|e| e.ok())
        .find(|e| std::fs::canonicalize(e.path()).ok().as_deref() == Some(node.as_path()))
        .and_then(|e| e.file_name().into_string().ok())
}

/// A V4L2 control as viewers see it, if rtcam offers it.
pub(super) fn describe_control(
    device: &Device,
    d: v4l::control::Description,
) -> Option<CameraControl> {
    use v4l::control::{Flags as CtrlFlags, MenuItem as V4lItem, Type as CtrlType};
    let key = controls::v4l2_key(d.id)?;
    if d.flags
        .intersects(CtrlFlags::DISABLED | CtrlFlags::READ_ONLY | CtrlFlags::GRABBED)
    {
        return None;
    }
    let items = |d: &v4l::control::Description| -> Vec<MenuItem> {
        d.items
            .iter()
            .flatten()
            .map(|(i, item)| MenuItem {
                value: i64::from(*i),
                label: match item {
                    V4lItem::Name(n) => n.clone(),
                    V4lItem::Value(v) => v.to_string(),
                },
            })
            .collect()
    };
    let kind = match d.typ {
        CtrlType::Integer | CtrlType::Integer64 => ControlKind::Integer {
            min: d.minimum,
            max: d.maximum,
            step: i64::try_from(d.step.max(1)).unwrap_or(1),
        },
        CtrlType::Boolean => ControlKind::Boolean,
        CtrlType::Menu | CtrlType::IntegerMenu => ControlKind::Menu { items: items(&d) },
        _ => return None,
    };
    let value = match device.control(d.id).ok()?.value {
        Value::Integer(v) => v,
        Value::Boolean(b) => i64::from(b),
        _ => return None,
    };
    Some(CameraControl {
        id: key.into(),
        name: d.name,
        kind,
        default: d.default,
        value,
        restarts: false,
    })
}
