//! A camera's MJPEG buffer, as broken as a camera (or a USB glitch) can make
//! it: decoded into a frame or refused with an error, never a panic and
//! never an allocation the declared size alone asks for. The first byte
//! picks the frame size the decoder expects, so well-formed seeds of the
//! corpus reach the entropy decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtcam::capture::mjpeg::{MjpegDecoder, with_standard_huffman_tables};
use rtcam::frame::RawFrame;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, jpeg)) = data.split_first() else { return };
    let (w, h) = [(16, 16), (32, 24), (64, 48), (2, 2)][pick as usize % 4];
    let mut frame = RawFrame::black(w, h);
    let mut decoder = MjpegDecoder::new();
    let _ = decoder.decode(jpeg, &mut frame);
    let _ = with_standard_huffman_tables(jpeg);
    // The decoder keeps working after whatever came before.
    let _ = decoder.decode(jpeg, &mut frame);
});
