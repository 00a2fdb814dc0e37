//! How each session's str0m `Rtc` is set up: codecs and their payload
//! types, extensions, buffers, estimation, the MTU, our host candidates.

use std::time::Duration;

use str0m::bwe::Bitrate;
use str0m::format::Codec;
use str0m::media::{Frequency, Mid};
use str0m::rtp::Extension;
use str0m::{Candidate, Rtc};

use super::{SessionConfig, SessionError, Sessions};
use crate::encode::SdpParams;
use crate::rtc::rate::START_ESTIMATE_KBPS;

/// Payload types in our codec config for H.264, VP8 and their
/// retransmissions. Browsers answer with their own numbers; we look the real
/// one up per viewer.
const H264_PT: u8 = 108;
const H264_RTX_PT: u8 = 109;
const VP8_PT: u8 = 96;
const VP8_RTX_PT: u8 = 97;
/// RTP header extension ids in our codec config (the offer's ids win).
const EXT_PLAYOUT_DELAY: u8 = 5;
const EXT_ABS_CAPTURE_TIME: u8 = 6;

/// What str0m may add to an RTP payload it cut for its MTU target: the
/// 12-byte header and our header extensions (up to about 40 bytes on a
/// frame's first packet: capture time, playout delay, mid, transport-wide
/// sequence), and the 2 bytes a retransmission prepends. str0m cuts the
/// payload to its target and adds these on top, so its target is set this
/// much under ours (DTLS and SCTP, which fit their target exactly, are then
/// a little smaller than they need be).
const RTP_HEADROOM: usize = 56;

/// str0m's MTU range for ours: the target under it by the headroom, and a
/// warning for anything that would still go over.
fn str0m_mtu(mtu: usize) -> std::ops::RangeInclusive<usize> {
    let target = mtu
        .saturating_sub(RTP_HEADROOM)
        .max(str0m::DATAGRAM_MTU_TARGET_MIN);
    target..=mtu
}

/// Video packets kept per viewer for retransmission (NACK), and for how
/// long. Each viewer keeps its own copy of every packet it was sent (str0m
/// packetizes per session), so this is most of what a viewer costs: str0m's
/// 1,000 packets over 3 s cost 1.5 MB a viewer, and 400 over 3 s about
/// 850 KB (the slots alone are 432 bytes each). A NACK comes a round trip
/// after the loss, and libwebrtc keeps about a second too: a second is
/// several round trips on any link a camera serves. A resend asked for
/// later than that is answered by a keyframe (the browser's PLI).
const SEND_BUFFER_AGE: Duration = Duration::from_secs(1);
/// At least this many packets (0.65 s at the default 1.9 Mbit/s ceiling,
/// 1,100-byte packets; two of its largest 720p IDRs, ~60 packets each)...
const SEND_BUFFER_MIN_PACKETS: usize = 150;
/// ...or half a second at the highest ceiling, whichever is more: a 1080p
/// camera at 4 Mbit/s (the Pi 5's profile) makes IDRs of 120 packets and
/// more, whose first packets must still be there when their NACK comes.
const SEND_BUFFER_MIN_SPAN: Duration = Duration::from_millis(500);
/// A passthrough camera's rate is its own and unknown here: the count
/// str0m was given before.
const SEND_BUFFER_PASSTHROUGH: usize = 400;
/// The size str0m cuts video packets to, about (`--mtu`'s default).
const PACKET_BYTES: u64 = 1_100;
/// str0m's default: queued resends are dropped while they are over 15 % of
/// what is sent.
const RESEND_RATIO_CAP: Option<f32> = Some(0.15);

/// How many video packets a viewer keeps for resends, from the highest
/// bitrate ceiling of the encoders rtcam drives.
fn send_buffer_packets(config: &SessionConfig) -> usize {
    let Some(kbps) = config.rates.iter().map(|(_, r)| r.ceiling_kbps).max() else {
        return SEND_BUFFER_PASSTHROUGH;
    };
    let bytes = u64::from(kbps) * 1000 / 8 * SEND_BUFFER_MIN_SPAN.as_millis() as u64 / 1000;
    SEND_BUFFER_MIN_PACKETS.max((bytes / PACKET_BYTES) as usize)
}

/// Sets a viewer's video stream to keep its packets for resends for at most
/// [`SEND_BUFFER_AGE`] (`RtcConfig` can set only the count; its age is 3 s).
/// A viewer's stream exists from its offer on. A WHIP publish keeps str0m's
/// own history (its count from `rtc_config`, for 3 s): set after its answer
/// was applied, its probes measured nothing through Janus, and it stayed at
/// about 260 kbit/s, paced, its picture 0.3-1.3 s late.
pub(super) fn keep_for_resends(rtc: &mut Rtc, mid: Mid, config: &SessionConfig) {
    if let Some(tx) = rtc.direct_api().stream_tx_by_mid(mid, None) {
        tx.set_rtx_cache(
            send_buffer_packets(config),
            SEND_BUFFER_AGE,
            RESEND_RATIO_CAP,
        );
    }
}

/// Audio packets str0m waits for after a gap before it moves on: one (20
/// ms); the talk-back jitter buffer covers longer reordering itself.
const AUDIO_REORDERING: usize = 1;

/// How often str0m reports each viewer's link (`/metrics`), and its
/// bandwidth estimate as it stands, which the bitrate policy follows.
const STATS_EVERY: Duration = Duration::from_millis(250);

impl Sessions {
    /// str0m's settings for a session sending `codecs` (ICE-lite: a
    /// publisher turns it off).
    pub(super) fn rtc_config(&self, codecs: &[SdpParams]) -> str0m::RtcConfig {
        let mut cfg = Rtc::builder()
            .set_ice_lite(true)
            .set_mtu(str0m_mtu(self.config.mtu))
            .set_stats_interval(Some(STATS_EVERY))
            .set_send_buffer_video(send_buffer_packets(&self.config))
            .enable_bwe(self.start_estimate())
            // Our jitter buffer (audio/jitter/) waits for late packets;
            // str0m's default would hold all audio ~300 ms after a loss.
            .set_reordering_size_audio(AUDIO_REORDERING)
            .clear_codecs();
        cfg.codec_config().enable_opus(true, false);
        for params in codecs {
            match *params {
                SdpParams::H264 { profile_level_id } => cfg.codec_config().add_h264(
                    H264_PT.into(),
                    Some(H264_RTX_PT.into()),
                    true,
                    profile_level_id,
                ),
                SdpParams::Vp8 => cfg.codec_config().add_config(
                    VP8_PT.into(),
                    Some(VP8_RTX_PT.into()),
                    Codec::Vp8,
                    Frequency::NINETY_KHZ,
                    None,
                    Default::default(),
                ),
            }
        }
        cfg.extension_map()
            .set(EXT_PLAYOUT_DELAY, Extension::PlayoutDelay);
        cfg.extension_map()
            .set(EXT_ABS_CAPTURE_TIME, Extension::AbsoluteCaptureTime);
        cfg
    }

    pub(super) fn add_local_candidates(&self, rtc: &mut Rtc) -> Result<(), SessionError> {
        for addr in &self.config.candidates {
            let c = Candidate::host(*addr, "udp")
                .map_err(|e| SessionError::Internal(format!("candidate {addr}: {e}")))?;
            rtc.add_local_candidate(c);
        }
        Ok(())
    }

    /// Where estimation starts, when any encoder's rate is ours to drive:
    /// low, so that nothing sent before a measurement overfills a slow
    /// link (`rate.rs`).
    fn start_estimate(&self) -> Option<Bitrate> {
        let any = !self.config.rates.is_empty();
        any.then(|| Bitrate::kbps(START_ESTIMATE_KBPS as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::VideoCodec;
    use crate::rtc::rate::RateRange;

    fn config(ceilings: &[u32]) -> SessionConfig {
        let mut c = SessionConfig::new(vec![], 4, vec![]);
        c.rates = ceilings
            .iter()
            .map(|&k| (VideoCodec::H264, RateRange::from_ceiling(k)))
            .collect();
        c
    }

    #[test]
    fn the_resend_history_holds_half_a_second_at_the_ceiling_and_150_packets_at_least() {
        assert_eq!(send_buffer_packets(&config(&[1935])), 150);
        assert_eq!(send_buffer_packets(&config(&[4000])), 227);
        assert_eq!(send_buffer_packets(&config(&[1935, 4000])), 227);
        assert_eq!(send_buffer_packets(&config(&[])), SEND_BUFFER_PASSTHROUGH);
    }
}
