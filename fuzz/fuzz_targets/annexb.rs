//! A camera's H.264 byte stream, cut into reads anywhere (as a pipe from
//! rpicam-vid cuts it) or into buffers (as V4L2 does), through the
//! passthrough splitter and the open-time probe: access units or errors,
//! never a panic, and memory bounded by the splitter's caps.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtcam::capture::annexb::H264Probe;
use rtcam::encode::passthrough::Passthrough;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else { return };
    let step = cut as usize % 97 + 1;
    let mut pass = Passthrough::new();
    let mut probe = H264Probe::default();
    for (i, chunk) in stream.chunks(step).enumerate() {
        pass.push(chunk);
        if cut & 0x80 != 0 && i % 3 == 2 {
            pass.end_of_unit();
        }
        while let Some(unit) = pass.next_access_unit() {
            if let Ok(au) = unit {
                assert!(!au.data.is_empty());
            }
        }
        let _ = probe.feed(chunk);
    }
    pass.end_of_unit();
    while pass.next_access_unit().is_some() {}
    let _ = pass.stream();
});
