//! A WHIP publish as a row of the table: rtcam offers and is the
//! controlling full-ICE agent, the receiver (an SFU) answers. It shares
//! everything else with the viewers: the one encode per codec, the socket,
//! the keyframe throttle, and the bitrate policy (its bandwidth estimate
//! counts like any viewer's, so a congested uplink to the SFU lowers the
//! shared encoder).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};

use super::audio::bind_audio;
use super::drain::{drain, start_estimating};
use super::sdp::{bind_codec, describe_codec, mid_of, one_line, video_mid};
use super::{SessionError, SessionEvent, Sessions};
use crate::frame::VideoCodec;
use crate::rtc::viewer::{Publish, Role, Viewer, ViewerId};

/// What a publish sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishSpec {
    /// One video codec: an SFU does not transcode, so every subscriber
    /// must decode what we send.
    pub codec: VideoCodec,
    /// An Opus section too (there is a microphone).
    pub audio: bool,
    /// A keyframe at least this often (Amazon IVS wants one every 1-2 s).
    pub keyframe_every: Option<Duration>,
}

impl Sessions {
    /// Makes a publishing session and returns our offer for the receiver.
    pub fn add_publisher(
        &mut self,
        now: Instant,
        spec: PublishSpec,
    ) -> Result<(ViewerId, String), SessionError> {
        self.now = self.now.max(now);
        let Some(params) = self
            .config
            .codecs
            .iter()
            .find(|p| p.codec() == spec.codec)
            .cloned()
        else {
            return Err(SessionError::NoCodec {
                offered: vec![spec.codec.to_string()],
                ours: self.config.codecs.iter().map(describe_codec).collect(),
            });
        };
        let mut rtc = self
            .rtc_config(std::slice::from_ref(&params))
            .set_ice_lite(false)
            .build(now);
        self.add_local_candidates(&mut rtc)?;
        let mut api = rtc.sdp_api();
        api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        if spec.audio {
            api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        }
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| SessionError::Internal("nothing to offer".into()))?;
        let id = self.fresh_id();
        let mut viewer = Viewer::new(id, rtc, now, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        viewer.role = Role::Publisher(Publish {
            pending: Some(pending),
            keyframe_every: spec.keyframe_every,
            next_keyframe: None,
        });
        self.viewers.push(viewer);
        self.drain_at(self.viewers.len() - 1);
        Ok((id, offer.to_sdp_string()))
    }

    /// The receiver's answer to a publish's offer.
    pub fn publisher_answer(
        &mut self,
        now: Instant,
        id: ViewerId,
        answer: &str,
    ) -> Result<(), SessionError> {
        self.now = self.now.max(now);
        let i = self.viewer_index(id).ok_or(SessionError::UnknownViewer)?;
        let v = &mut self.viewers[i];
        let Role::Publisher(publish) = &mut v.role else {
            return Err(SessionError::NoPendingOffer);
        };
        let pending = publish.pending.take().ok_or(SessionError::NoPendingOffer)?;
        let parsed = SdpAnswer::from_sdp_string(answer)
            .map_err(|e| SessionError::BadAnswer(one_line(&e.to_string())))?;
        v.rtc
            .sdp_api()
            .accept_answer(pending, parsed)
            .map_err(|e| SessionError::BadAnswer(e.to_string()))?;
        // str0m tells the side that offered of no media (no MediaAdded):
        // bind it from the answer now that a codec was agreed.
        let mut joined = None;
        if let Some(mid) = v.mid.or_else(|| video_mid(answer))
            && v.codec.is_none()
            && let Some((codec, pt)) = bind_codec(v, mid, &self.config.codecs)
        {
            (v.mid, v.codec, v.pt) = (Some(mid), Some(codec), Some(pt));
            joined = start_estimating(v, mid, &self.config);
        }
        if v.audio.is_none()
            && let Some(mid) = mid_of(answer, "audio")
        {
            bind_audio(v, mid, true);
        }
        let mut events = std::collections::VecDeque::new();
        drain(v, &mut self.transmits, &mut events, &self.config);
        self.events.extend(events);
        if let Some(codec) = joined {
            self.rate.join(now, id, codec);
            self.push_targets();
        }
        if self.viewers[i].codec.is_none() {
            let ours = self.config.codecs.iter().map(describe_codec).collect();
            return Err(SessionError::NoCodec {
                offered: Vec::new(),
                ours,
            });
        }
        Ok(())
    }

    /// Keyframes a publish asks for on its own schedule.
    pub(super) fn publish_keyframes(&mut self, now: Instant) {
        for v in &mut self.viewers {
            let (sending, codec, id) = (v.sending(), v.codec, v.id);
            let Role::Publisher(p) = &mut v.role else {
                continue;
            };
            let (Some(every), Some(codec), true) = (p.keyframe_every, codec, sending) else {
                continue;
            };
            match p.next_keyframe {
                Some(at) if now < at => {}
                // The first is the one every connect brings.
                None => p.next_keyframe = Some(now + every),
                Some(_) => {
                    p.next_keyframe = Some(now + every);
                    self.events
                        .push_back(SessionEvent::KeyframeWanted(id, codec));
                }
            }
        }
    }

    /// The next publish keyframe due.
    pub(super) fn next_publish_keyframe(&self) -> Option<Instant> {
        self.viewers
            .iter()
            .filter_map(|v| match &v.role {
                Role::Publisher(p) => p.next_keyframe,
                Role::Viewer => None,
            })
            .min()
    }
}
