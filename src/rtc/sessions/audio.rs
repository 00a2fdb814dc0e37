//! Audio, a second media kind beside video: the microphone's one Opus
//! encode to every viewer whose answer sends audio, and the talker's voice
//! out of the table for the speaker.

use std::time::{Duration, UNIX_EPOCH};

use str0m::format::Codec;
use str0m::media::{Frequency, MediaData, MediaTime};
use str0m::rtp::AbsCaptureTime;

use super::drain::drain;
use super::{SessionEvent, Sessions};
use crate::audio::{EncodedAudio, SILENCE_DBOV, TalkPacket};
use crate::control::talk::AudioView;
use crate::rtc::viewer::{AudioLink, EndReason, Viewer};

impl Sessions {
    /// Sends one encoded microphone frame to every viewer that takes audio.
    pub fn write_audio(&mut self, packet: &EncodedAudio) {
        let samples = packet
            .captured
            .saturating_duration_since(self.epoch)
            .as_micros()
            * 48
            / 1000;
        let rtp_time = MediaTime::new(samples as u64, Frequency::FORTY_EIGHT_KHZ);
        let wall = UNIX_EPOCH + Duration::from_nanos(packet.wall_ns);
        let level = -(packet.level.min(127) as i8);
        let voiced = packet.level < SILENCE_DBOV;
        for i in 0..self.viewers.len() {
            let v = &mut self.viewers[i];
            let Some(link) = v.audio.filter(|a| a.sends && v.sending()) else {
                continue;
            };
            let Some(writer) = v.rtc.writer(link.mid) else {
                continue;
            };
            let result = writer
                .audio_level(level, voiced)
                .abs_capture_time(AbsCaptureTime {
                    capture_time: wall,
                    clock_offset: None,
                })
                .write(link.pt, packet.captured, rtp_time, packet.data.clone());
            match result {
                Ok(()) => v.audio_sent += 1,
                Err(e) => {
                    v.ending.get_or_insert(EndReason::Failed(e.to_string()));
                }
            }
            drain(v, &mut self.transmits, &mut self.events, &self.config);
        }
        self.reap();
    }

    /// Viewers whose answer sends them audio (the microphone encodes only
    /// while there are any).
    pub fn audio_listeners(&self) -> usize {
        self.viewers
            .iter()
            .filter(|v| v.ending.is_none() && v.audio.is_some_and(|a| a.sends))
            .count()
    }

    /// The worst loss on the wire among viewers that hear the microphone,
    /// 0..=1 (transport-wide feedback: audio has no retransmissions, so
    /// what the wire loses is what the listener loses; receiver reports
    /// where a viewer gives no such feedback).
    pub fn audio_loss(&self) -> f32 {
        self.viewers
            .iter()
            .filter(|v| v.audio.is_some_and(|a| a.sends))
            .filter_map(|v| v.stats.wire_loss.or(v.stats.loss))
            .filter(|l| !l.is_nan())
            .fold(0.0, f32::max)
    }

    /// The device's microphone and speaker, told to every viewer.
    pub fn set_audio(&mut self, view: AudioView) {
        self.control.audio(view);
        self.route_channels();
    }

    /// Audio from viewer `i`: to the speaker if it holds the talk floor.
    pub(super) fn heard(&mut self, i: usize, data: MediaData) {
        let v = &mut self.viewers[i];
        v.audio_received += 1;
        // RFC 6464: -dBov; a viewer that sends no level counts as voiced
        // while its packets come.
        let voiced = data
            .ext_vals
            .audio_level
            .is_none_or(|l| (l.unsigned_abs()) < SILENCE_DBOV);
        let (id, may_talk) = (v.id, v.may_control);
        if self.control.voice(self.now, id, voiced, may_talk) {
            self.events.push_back(SessionEvent::Talk(TalkPacket {
                seq: **data.seq_range.start(),
                rtp_time: data.time.numer(),
                data: data.data.to_vec(),
                arrived: data.network_time,
            }));
        }
    }
}

/// Binds a viewer's audio section: its mid, the Opus payload type its
/// offer gave, and whether our answer sends on it.
pub(super) fn bind_audio(v: &mut Viewer, mid: str0m::media::Mid, sends: bool) {
    let Some(writer) = v.rtc.writer(mid) else {
        // Receive-only for us (the viewer only talks): no writer, yet its
        // audio is still heard.
        v.audio = Some(AudioLink {
            mid,
            pt: 0.into(),
            sends: false,
        });
        return;
    };
    let pt = writer
        .payload_params()
        .find(|p| p.spec().codec == Codec::Opus)
        .map(|p| p.pt());
    if let Some(pt) = pt {
        v.audio = Some(AudioLink { mid, pt, sends });
    }
}
