//! A viewer joins: its offer answered (ICE-lite, all our candidates in
//! the answer), bound to a codec, within the limits; and its trickled
//! candidates.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Instant;

use str0m::Candidate;
use str0m::change::SdpOffer;
use str0m::net::Protocol;

use super::drain::{drain, start_estimating};
use super::sdp::{bind_codec, describe_codec, offered_video_codecs, one_line, truncate, video_mid};
use super::{MAX_REMOTE_CANDIDATES, SessionError, Sessions};
use crate::rtc::viewer::{Viewer, ViewerId};

impl Sessions {
    /// Answers a browser's offer, creating the viewer.
    pub fn add_viewer(
        &mut self,
        now: Instant,
        offer: &str,
        from: IpAddr,
    ) -> Result<(ViewerId, String), SessionError> {
        self.now = self.now.max(now);
        if self.len() >= self.config.max_viewers {
            return Err(SessionError::Full(self.config.max_viewers));
        }
        if self.viewers.iter().filter(|v| v.from == from).count() >= self.config.max_per_address {
            return Err(SessionError::TooManyFromAddress(
                self.config.max_per_address,
            ));
        }
        let offered = offered_video_codecs(offer);
        let offer = SdpOffer::from_sdp_string(offer)
            .map_err(|e| SessionError::BadOffer(one_line(&e.to_string())))?;
        let mut rtc = self.rtc_config(&self.config.codecs).build(now);
        self.add_local_candidates(&mut rtc)?;
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| SessionError::BadOffer(e.to_string()))?;
        let answer = answer.to_sdp_string();
        if !answer.contains("m=video") {
            return Err(SessionError::NoVideo);
        }
        let id = self.fresh_id();
        let mut viewer = Viewer::new(id, rtc, now, from);
        // Bound now, from the answer, so its encoder can start while ICE
        // and DTLS are still under way.
        if let Some(mid) = video_mid(&answer)
            && let Some((codec, pt)) = bind_codec(&mut viewer, mid, &self.config.codecs)
        {
            viewer.codec = Some(codec);
            viewer.pt = Some(pt);
            if let Some(codec) = start_estimating(&mut viewer, mid, &self.config) {
                self.rate.join(now, id, codec);
            }
        }
        let mut events = VecDeque::new();
        drain(&mut viewer, &mut self.transmits, &mut events, &self.config);
        if viewer.codec.is_none() {
            let ours = self.config.codecs.iter().map(describe_codec).collect();
            return Err(SessionError::NoCodec { offered, ours });
        }
        self.events.extend(events);
        self.push_targets();
        self.viewers.push(viewer);
        self.drain_at(self.viewers.len() - 1);
        Ok((id, answer))
    }

    /// A trickled candidate from the browser. Candidates we cannot use
    /// (mDNS names, TCP) are ignored: as ICE-lite we learn the browser's
    /// address from its own checks anyway.
    pub fn add_remote_candidate(
        &mut self,
        id: ViewerId,
        candidate: &str,
    ) -> Result<(), SessionError> {
        let line = candidate.trim().trim_start_matches("a=");
        let v = self.viewer_mut(id).ok_or(SessionError::UnknownViewer)?;
        if line.is_empty() {
            return Ok(()); // end of candidates
        }
        if !line.starts_with("candidate:") {
            return Err(SessionError::BadCandidate(format!(
                "expected 'candidate:...', got '{}'",
                truncate(line, 80)
            )));
        }
        // Every one costs the media task work for the session's life: a
        // browser sends a handful, never dozens.
        if v.remote_candidates >= MAX_REMOTE_CANDIDATES {
            return Err(SessionError::TooManyCandidates(MAX_REMOTE_CANDIDATES));
        }
        v.remote_candidates += 1;
        match Candidate::from_sdp_string(line) {
            Ok(c) if c.proto() == Protocol::Udp => {
                v.rtc.add_remote_candidate(c);
                let v = self.viewer_index(id).ok_or(SessionError::UnknownViewer)?;
                self.drain_at(v);
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(e) if line.contains(".local ") => {
                tracing::debug!("ignoring mDNS candidate: {e}");
                Ok(())
            }
            Err(e) => Err(SessionError::BadCandidate(e.to_string())),
        }
    }
}
