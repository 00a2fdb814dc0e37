//! What passthrough learns from the first access units: the SPS, and
//! whether the stream has B-frames.

use super::*;

/// What a camera's H.264 is, read off its first buffers when it opens: the
/// SDP must carry the stream's own profile-level-id before any viewer is
/// answered, and a stream with B-frames is refused at once (WebRTC plays
/// frames in the order they arrive).
///
/// `default()` takes V4L2 buffers (each ends a NAL unit);
/// [`H264Probe::for_stream`] takes reads of a pipe.
#[derive(Default)]
pub struct H264Probe {
    pub(super) splitter: NalSplitter,
    pub(super) sps: Option<Sps>,
    /// Slices seen after the SPS: a few, so B-frames (which follow the
    /// first I or P frame) show before the verdict.
    pub(super) slices: usize,
    /// A bare byte stream (`rpicam-vid -o -`): a read may end anywhere, even
    /// inside a NAL unit or a start code, so nothing is finished at its end.
    pub(super) stream: bool,
}

/// Slices the probe reads after the SPS before it says yes.
pub(super) const PROBE_SLICES: usize = 8;

impl H264Probe {
    /// A probe for a bare byte stream in reads of any size: a NAL unit is
    /// read once the next start code shows it ended, so the verdict comes
    /// one NAL unit later than from whole buffers.
    pub fn for_stream() -> Self {
        H264Probe {
            stream: true,
            ..H264Probe::default()
        }
    }

    /// Feeds one buffer (a whole access unit; for a stream probe, any read).
    /// `Ok(Some(profile-level-id))` once the stream is known good,
    /// `Ok(None)` while it needs more, `Err` with the reason when it cannot
    /// be passed through.
    pub fn feed(&mut self, buffer: &[u8]) -> Result<Option<String>, String> {
        self.splitter.push(buffer);
        if !self.stream {
            self.splitter.finish();
        }
        while let Some(nal) = self.splitter.next_nal() {
            let Ok(nal) = nal else { continue };
            match nal_type(&nal) {
                Ok(NalType::Sps) => {
                    self.sps =
                        Some(parse_sps(&nal).map_err(|e| format!("its SPS is broken: {e}"))?);
                }
                Ok(kind) if kind.has_slice_header() && self.sps.is_some() => {
                    if let Ok(h) = parse_slice_header(&nal) {
                        if h.slice_type == SliceType::B {
                            return Err(
                                "it sends B-frames, which WebRTC cannot play in order; set the camera to \
                                 the baseline profile (or use --capture-format mjpeg or raw)"
                                    .into(),
                            );
                        }
                        self.slices += 1;
                    }
                }
                _ => {}
            }
        }
        Ok(match &self.sps {
            Some(sps) if self.slices >= PROBE_SLICES => {
                Some(format!("{:06x}", sps.profile_level_id()))
            }
            _ => None,
        })
    }
}
