//! A WHEP POST body as an SDP offer, through the session table: refused
//! with an error or answered, never a panic.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use rtcam::rtc::{SessionConfig, Sessions};

fuzz_target!(|data: &[u8]| {
    let Ok(offer) = std::str::from_utf8(data) else { return };
    let codecs = vec![
        rtcam::encode::SdpParams::H264 {
            profile_level_id: 0x42e01f,
        },
        rtcam::encode::SdpParams::Vp8,
    ];
    let config = SessionConfig::new(vec!["127.0.0.1:8443".parse().unwrap()], 4, codecs);
    let now = Instant::now();
    let mut sessions = Sessions::new(config, now);
    if let Ok((id, answer)) = sessions.add_viewer(now, offer, [127, 0, 0, 1].into()) {
        assert!(answer.starts_with("v=0"));
        let _ = sessions.add_remote_candidate(id, offer.lines().next().unwrap_or(""));
        sessions.handle_timeout(now);
    }
});
