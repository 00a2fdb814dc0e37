//! The motion thread: pictures the capture already delivers (at most
//! [`RATE`] a second, through a one-picture mailbox that drops rather than
//! waits), shrunk to a small luma picture and fed to the detector. Each
//! event is kept with a small snapshot (`events.rs`), told to the viewers
//! (the rtc task), handed to the recorder and to the `--on-event` hook.
//!
//! Zones are kept in the state dir (`motion-zones.json`) and set from the
//! page (`PUT /api/motion/zones`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc as tokio_mpsc;

use super::events::{EventBoard, MotionNotice};
use super::hook::Hook;
use super::motion::{MotionConfig, MotionDetector, MotionEvent, Zone, ZoneKind, small_luma};
use super::tap::RecordTap;
use crate::frame::RawFrame;

/// Pictures looked at a second: motion lasts longer than 100 ms.
pub const RATE: u32 = 10;
/// The snapshot's width (the timeline's thumbnail and the event's picture).
const SNAPSHOT_WIDTH: usize = 320;
/// Zones at most.
pub const MAX_ZONES: usize = 16;
const ZONES_FILE: &str = "motion-zones.json";

/// A zone as the page and the state file write it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ZoneJson {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
    pub kind: ZoneKindJson,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ZoneKindJson {
    Watch,
    Ignore,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ZoneError {
    #[error("at most {MAX_ZONES} zones")]
    TooMany,
    #[error("zone {0}: x, y, w and h are fractions of the picture (0 to 1), w and h above 0")]
    OutOfPicture(usize),
}

/// Checks zones from the page.
pub fn check_zones(zones: &[ZoneJson]) -> Result<(), ZoneError> {
    if zones.len() > MAX_ZONES {
        return Err(ZoneError::TooMany);
    }
    for (i, z) in zones.iter().enumerate() {
        let fine = [z.x, z.y, z.w, z.h].iter().all(|v| v.is_finite())
            && z.x >= 0.0
            && z.y >= 0.0
            && z.w > 0.0
            && z.h > 0.0
            && z.x + z.w <= 1.0 + 1e-4
            && z.y + z.h <= 1.0 + 1e-4;
        if !fine {
            return Err(ZoneError::OutOfPicture(i));
        }
    }
    Ok(())
}

fn to_zone(z: &ZoneJson) -> Zone {
    Zone {
        x: z.x,
        y: z.y,
        w: z.w,
        h: z.h,
        kind: match z.kind {
            ZoneKindJson::Watch => ZoneKind::Watch,
            ZoneKindJson::Ignore => ZoneKind::Ignore,
        },
    }
}

/// The zones in force, shared with the HTTP plane; the motion thread picks
/// up a change by its version.
#[derive(Debug, Clone, Default)]
pub struct Zones {
    inner: Arc<Mutex<(u64, Vec<ZoneJson>)>>,
    file: Option<PathBuf>,
}

impl Zones {
    /// The zones kept in `state_dir` (none when missing or unreadable).
    pub fn load(state_dir: &Path) -> Zones {
        let file = state_dir.join(ZONES_FILE);
        let zones: Vec<ZoneJson> = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .filter(|z: &Vec<ZoneJson>| check_zones(z).is_ok())
            .unwrap_or_default();
        Zones {
            inner: Arc::new(Mutex::new((0, zones))),
            file: Some(file),
        }
    }

    pub fn get(&self) -> (u64, Vec<ZoneJson>) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// New zones: checked, kept on disk, then in force.
    pub fn set(&self, zones: Vec<ZoneJson>) -> Result<(), SetZonesError> {
        check_zones(&zones).map_err(SetZonesError::Invalid)?;
        if let Some(file) = &self.file {
            let json = serde_json::to_vec(&zones).unwrap_or_default();
            crate::state_dir::write_private(file, &json).map_err(SetZonesError::Keep)?;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *inner = (inner.0 + 1, zones);
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SetZonesError {
    #[error("{0}")]
    Invalid(ZoneError),
    #[error("cannot keep the zones: {0}")]
    Keep(std::io::Error),
}

/// Where the capture hands pictures to the motion thread.
#[derive(Debug)]
pub struct MotionTap {
    tx: SyncSender<Arc<RawFrame>>,
    /// When the last picture was taken (ms since `epoch`).
    last_ms: AtomicU64,
    epoch: Instant,
}

impl MotionTap {
    /// Whether a picture is wanted now (at most [`RATE`] a second).
    pub fn wants(&self) -> bool {
        let now = self.epoch.elapsed().as_millis() as u64;
        now >= self.last_ms.load(Ordering::Relaxed) + u64::from(1000 / RATE)
    }

    pub fn offer(&self, frame: &Arc<RawFrame>) {
        if !self.wants() {
            return;
        }
        self.last_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        match self.tx.try_send(frame.clone()) {
            Ok(()) | Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// Everything the motion thread owns.
pub struct MotionThread {
    pub board: EventBoard,
    pub zones: Zones,
    pub viewers: tokio_mpsc::Sender<MotionNotice>,
    pub recorder: Option<Arc<RecordTap>>,
    pub hook: Option<Hook>,
    /// The appliance is stopping.
    pub stop: Arc<std::sync::atomic::AtomicBool>,
}

impl MotionThread {
    /// Starts the thread; the tap is what the capture feeds.
    pub fn spawn(self) -> std::io::Result<(Arc<MotionTap>, std::thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::sync_channel(1);
        let tap = Arc::new(MotionTap {
            tx,
            last_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        });
        let thread = std::thread::Builder::new()
            .name("motion".into())
            .spawn(move || self.run(rx))?;
        Ok((tap, thread))
    }

    fn run(self, pictures: Receiver<Arc<RawFrame>>) {
        let (mut version, zones) = self.zones.get();
        let mut detector = MotionDetector::new(MotionConfig {
            zones: zones.iter().map(to_zone).collect(),
            ..MotionConfig::default()
        });
        while !self.stop.load(Ordering::Relaxed) {
            let frame = match pictures.recv_timeout(Duration::from_millis(200)) {
                Ok(f) => Some(f),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let (v, zones) = self.zones.get();
            if v != version {
                version = v;
                detector.set_zones(zones.iter().map(to_zone).collect());
            }
            // No picture (a passthrough camera, or no camera): nothing
            // to judge; the camera-lost slate comes as pictures.
            let Some(frame) = frame else { continue };
            let (y, _, _) = frame.planes();
            let (mut luma, w, h) = small_luma(y, frame.width, frame.width, frame.height);
            hide_stripe(y, &frame, &mut luma, w, h);
            detector.feed(frame.captured, &luma, w, h);
            while let Some(event) = detector.poll_event() {
                self.tell(&event, &frame);
            }
        }
    }

    fn tell(&self, event: &MotionEvent, frame: &RawFrame) {
        let notice = match *event {
            MotionEvent::Started { area, .. } => {
                let jpeg = snapshot(frame);
                tracing::info!("motion started ({:.1} % of the picture)", area * 100.0);
                self.board.started(frame.stamp_ms, area, jpeg)
            }
            MotionEvent::Ended { lasted, .. } => {
                tracing::info!("motion ended after {:.1} s", lasted.as_secs_f64());
                let Some(n) = self.board.ended(frame.stamp_ms, lasted.as_millis() as u64) else {
                    return;
                };
                n
            }
        };
        if let Some(r) = &self.recorder {
            r.motion(notice.state == "started");
        }
        if let Some(hook) = &self.hook {
            hook.fire(serde_json::to_string(&notice).unwrap_or_default());
        }
        // A full road (the rtc task far behind) loses the notice; the page
        // still finds the event in /api/events.
        let _ = self.viewers.try_send(notice);
    }
}

/// The test sources' timestamp stripe changes every frame: where a frame
/// carries one, its rows are not looked at (they are made flat).
pub(crate) fn hide_stripe(y: &[u8], frame: &RawFrame, luma: &mut [u8], w: usize, h: usize) {
    use crate::capture::stripe;
    if stripe::decode_luma(y, frame.width, frame.height, frame.width).is_some() {
        let rows = (stripe::ROWS * h).div_ceil(frame.height.max(1)).min(h);
        luma[..rows * w].fill(128);
    }
}

/// The event's picture: [`SNAPSHOT_WIDTH`] wide, as JPEG.
fn snapshot(frame: &RawFrame) -> Option<Vec<u8>> {
    let w = SNAPSHOT_WIDTH.min(frame.width) & !1;
    let h = (frame.height * w / frame.width.max(1)) & !1;
    let mut small = RawFrame::black(w.max(2), h.max(2));
    frame.scale_into(&mut small, w.max(2), h.max(2));
    crate::encode::jpeg::encode_jpeg(&small, 80).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(x: f32, y: f32, w: f32, h: f32) -> ZoneJson {
        ZoneJson {
            x,
            y,
            w,
            h,
            kind: ZoneKindJson::Ignore,
        }
    }

    #[test]
    fn zones_from_the_page_are_checked() {
        assert!(check_zones(&[zone(0.0, 0.0, 1.0, 1.0), zone(0.5, 0.5, 0.25, 0.5)]).is_ok());
        assert_eq!(
            check_zones(&[zone(0.9, 0.0, 0.2, 0.1)]),
            Err(ZoneError::OutOfPicture(0))
        );
        assert_eq!(
            check_zones(&[zone(0.1, 0.1, 0.0, 0.1)]),
            Err(ZoneError::OutOfPicture(0))
        );
        assert_eq!(
            check_zones(&[zone(f32::NAN, 0.1, 0.1, 0.1)]),
            Err(ZoneError::OutOfPicture(0))
        );
        let many = vec![zone(0.0, 0.0, 0.1, 0.1); MAX_ZONES + 1];
        assert_eq!(check_zones(&many), Err(ZoneError::TooMany));
    }

    #[test]
    fn zones_are_kept_in_the_state_dir() {
        let dir = std::env::temp_dir().join(format!("rtcam-zones-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let zones = Zones::load(&dir);
        assert_eq!(zones.get(), (0, vec![]));
        zones.set(vec![zone(0.1, 0.2, 0.3, 0.4)]).unwrap();
        assert!(zones.set(vec![zone(0.9, 0.2, 0.3, 0.4)]).is_err());
        let again = Zones::load(&dir);
        assert_eq!(again.get().1, vec![zone(0.1, 0.2, 0.3, 0.4)]);
        let _ = std::fs::remove_dir_all(dir);
    }
}
