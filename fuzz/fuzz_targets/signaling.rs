//! Any sequence of WebSocket text messages: the state machine never panics
//! and always answers garbage with an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtcam::rtc::ViewerId;
use rtcam::signal::{Action, Signaling};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut s = Signaling::new();
    for (i, msg) in text.split('\u{1e}').enumerate() {
        for action in s.on_text(msg) {
            // Play the rtc task's part so every state is reachable.
            if let Action::CreateViewer(_) = action {
                if i % 3 == 0 {
                    s.viewer_refused("full".into());
                } else {
                    s.viewer_created(ViewerId(i as u64), "v=0".into());
                }
            }
        }
    }
    s.on_closed();
});
