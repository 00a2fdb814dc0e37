//! A camera's MJPEG buffer, as broken as a camera (or a USB glitch) can make
//! it: decoded into a frame or refused with an error, never a panic and
//! never an allocation the declared size alone asks for. The first byte
//! picks the frame size the decoder expects; a header that says another
//! (small) size is decoded at that size too, so mutations reach the entropy
//! decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtcam::capture::mjpeg::{MjpegDecoder, MjpegError, with_standard_huffman_tables};
use rtcam::frame::RawFrame;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, jpeg)) = data.split_first() else { return };
    let (w, h) = [(16, 16), (32, 24), (64, 48), (2, 2)][pick as usize % 4];
    let mut frame = RawFrame::black(w, h);
    let mut decoder = MjpegDecoder::new();
    // A mutated size still reaches the entropy decoder: retry at the size
    // the header says, when it is small.
    if let Err(MjpegError::SizeMismatch { got: (w, h), .. }) = decoder.decode(jpeg, &mut frame)
        && (2..=512).contains(&w)
        && (2..=512).contains(&h)
        && w % 2 == 0
        && h % 2 == 0
    {
        let mut sized = RawFrame::black(w as usize, h as usize);
        let _ = decoder.decode(jpeg, &mut sized);
    }
    let _ = with_standard_huffman_tables(jpeg);
    // The decoder keeps working after whatever came before.
    let _ = decoder.decode(jpeg, &mut frame);
});
