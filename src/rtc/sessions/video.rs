//! Video to viewers: each encoded frame to every viewer that can take it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use str0m::media::{Frequency, MediaTime};
use str0m::rtp::AbsCaptureTime;

use super::Sessions;
use crate::frame::EncodedFrame;
use crate::rtc::viewer::EndReason;

impl Sessions {
    /// Sends one encoded frame to every viewer that can take it. A viewer
    /// that just joined waits for the next IDR.
    pub fn write_frame(&mut self, frame: &EncodedFrame) {
        let times = self.times_of(frame);
        for i in 0..self.viewers.len() {
            let v = &self.viewers[i];
            if v.sending() && v.codec == Some(frame.codec) && self.write_to(i, frame, times) {
                self.drain_at(i);
            }
        }
        self.push_targets();
        self.reap();
    }

    /// Writes one frame to viewer `i` (sending, of the frame's codec):
    /// whether anything went to its str0m, which must then be drained.
    fn write_to(&mut self, i: usize, frame: &EncodedFrame, times: FrameTimes) -> bool {
        let v = &mut self.viewers[i];
        if v.awaiting_keyframe {
            if !frame.keyframe {
                return false;
            }
            v.awaiting_keyframe = false;
        }
        if frame.keyframe {
            Self::arm_probes(v, self.now);
        }
        if v.frames_sent == 0 {
            self.rate.streaming(self.now, v.id);
            let age = self.now.saturating_duration_since(frame.captured);
            tracing::debug!(viewer = %v.id, bytes = frame.data.len(), "first frame, captured {age:?} ago");
        }
        // A link below the floor gets what it can carry: the frames no
        // other frame refers to are left out.
        if frame.droppable && self.rate.thinned(v.id) {
            v.frames_thinned += 1;
            return false;
        }
        let (Some(mid), Some(pt)) = (v.mid, v.pt) else {
            return false;
        };
        let Some(mut writer) = v.rtc.writer(mid) else {
            v.ending
                .get_or_insert(EndReason::Failed("media vanished".into()));
            return false;
        };
        if self.config.zero_playout_delay {
            writer = writer.playout_delay(MediaTime::ZERO, MediaTime::ZERO);
        }
        let result = writer
            .abs_capture_time(AbsCaptureTime {
                capture_time: times.wall,
                clock_offset: None,
            })
            .write(pt, frame.captured, times.rtp, frame.data.clone());
        match result {
            Ok(()) => v.frames_sent += 1,
            Err(e) => {
                v.ending.get_or_insert(EndReason::Failed(e.to_string()));
            }
        }
        true
    }

    /// A frame's times, the same for every viewer: its capture time on the
    /// media clock all viewers share, and on the wall clock.
    fn times_of(&self, frame: &EncodedFrame) -> FrameTimes {
        let since = frame.captured.saturating_duration_since(self.epoch);
        FrameTimes {
            rtp: MediaTime::new((since.as_micros() * 9 / 100) as u64, Frequency::NINETY_KHZ),
            wall: UNIX_EPOCH + Duration::from_millis(frame.stamp_ms),
        }
    }
}

/// What [`Sessions::times_of`] works out once per frame.
#[derive(Clone, Copy)]
struct FrameTimes {
    rtp: MediaTime,
    wall: SystemTime,
}
