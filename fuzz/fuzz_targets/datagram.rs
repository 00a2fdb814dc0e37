//! Datagrams from the network, as anyone who can reach the media port can
//! send them, through `Sessions::handle_receive` with a viewer in place:
//! dropped, or taken (STUN, DTLS, RTP/RTCP demultiplexing), never a panic.
//! The input is a run of datagrams, each prefixed by a length byte; the
//! first byte picks whose address they seem to come from.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rtcam::rtc::{SessionConfig, Sessions};
use str0m::media::{Direction, MediaKind};
use str0m::{Candidate, Rtc};

const SERVER: &str = "127.0.0.1:8443";

fuzz_target!(|data: &[u8]| {
    let Some((&who, mut rest)) = data.split_first() else { return };
    let viewer: SocketAddr = "10.0.0.10:5000".parse().unwrap();
    let stranger: SocketAddr = "10.0.0.99:5000".parse().unwrap();
    let codecs = vec![
        rtcam::encode::SdpParams::H264 {
            profile_level_id: 0x42e01f,
        },
        rtcam::encode::SdpParams::Vp8,
    ];
    let now = Instant::now();
    let config = SessionConfig::new(vec![SERVER.parse().unwrap()], 4, codecs);
    let mut sessions = Sessions::new(config, now);
    let mut peer = Rtc::builder().enable_h264(true).enable_vp8(true).build(now);
    peer.add_local_candidate(Candidate::host(viewer, "udp").unwrap());
    let mut api = peer.sdp_api();
    api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let Some((offer, _)) = api.apply() else { return };
    if sessions.add_viewer(now, &offer.to_sdp_string(), viewer.ip()).is_err() {
        return;
    }
    let from = if who & 1 == 0 { viewer } else { stranger };
    let mut t = now;
    while let Some((&len, tail)) = rest.split_first() {
        let n = (len as usize).min(tail.len());
        let (datagram, next) = tail.split_at(n);
        t += Duration::from_millis(5);
        sessions.handle_receive(t, from, SERVER.parse().unwrap(), datagram);
        sessions.handle_timeout(t);
        while sessions.poll_transmit().is_some() {}
        while sessions.poll_event().is_some() {}
        rest = next;
    }
});
