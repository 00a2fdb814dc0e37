//! A WHEP PATCH body (trickle-ice-sdpfrag) and each candidate it yields.
#![no_main]

use std::sync::OnceLock;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use rtcam::rtc::{SessionConfig, Sessions};
use rtcam::signal::parse_sdpfrag;

/// A real browser-style offer, so candidates reach a live viewer.
fn offer() -> &'static str {
    static OFFER: OnceLock<String> = OnceLock::new();
    OFFER.get_or_init(|| {
        let mut rtc = str0m::Rtc::builder()
            .clear_codecs()
            .enable_h264(true)
            .build(Instant::now());
        let mut api = rtc.sdp_api();
        api.add_media(
            str0m::media::MediaKind::Video,
            str0m::media::Direction::RecvOnly,
            None,
            None,
            None,
        );
        api.apply().expect("offer").0.to_sdp_string()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else { return };
    let Ok(candidates) = parse_sdpfrag(body) else { return };
    let codecs = vec![
        rtcam::encode::SdpParams::H264 {
            profile_level_id: 0x42e01f,
        },
        rtcam::encode::SdpParams::Vp8,
    ];
    let config = SessionConfig::new(vec!["127.0.0.1:8443".parse().unwrap()], 4, codecs);
    let now = Instant::now();
    let mut sessions = Sessions::new(config, now);
    let (id, _) = sessions
        .add_viewer(now, offer(), [127, 0, 0, 1].into())
        .expect("the canned offer is accepted");
    for c in candidates {
        let _ = sessions.add_remote_candidate(id, &c);
    }
});
