use super::*;

/// Writes RBSP bits, for hand-made headers.
#[derive(Default)]
pub(crate) struct BitWriter {
    bytes: Vec<u8>,
    bits: u32,
    n: u32,
}

impl BitWriter {
    pub fn u(&mut self, n: u32, v: u32) -> &mut Self {
        for i in (0..n).rev() {
            self.bits = (self.bits << 1) | ((v >> i) & 1);
            self.n += 1;
            if self.n == 8 {
                self.bytes.push(self.bits as u8);
                (self.bits, self.n) = (0, 0);
            }
        }
        self
    }
    pub fn ue(&mut self, v: u32) -> &mut Self {
        let x = v as u64 + 1;
        let len = 64 - x.leading_zeros();
        self.u(len - 1, 0);
        for i in (0..len).rev() {
            self.u(1, ((x >> i) & 1) as u32);
        }
        self
    }
    pub fn se(&mut self, v: i32) -> &mut Self {
        let k = if v > 0 {
            2 * v as u32 - 1
        } else {
            2 * v.unsigned_abs()
        };
        self.ue(k)
    }
    /// rbsp_trailing_bits, then emulation prevention: a NAL payload.
    pub fn nal(&mut self, header: u8) -> Vec<u8> {
        self.u(1, 1);
        while self.n != 0 {
            self.u(1, 0);
        }
        let mut out = vec![header];
        let mut zeros = 0;
        for &b in &self.bytes {
            if zeros >= 2 && b <= 3 {
                out.push(3);
                zeros = 0;
            }
            out.push(b);
            zeros = if b == 0 { zeros + 1 } else { 0 };
        }
        out
    }
}

fn split(stream: &[u8], chunks: &[usize]) -> Vec<Result<Vec<u8>, AnnexBError>> {
    let mut s = NalSplitter::new();
    let mut out = Vec::new();
    let mut rest = stream;
    for &c in chunks.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (a, b) = rest.split_at(c.clamp(1, rest.len()));
        s.push(a);
        rest = b;
        out.extend(std::iter::from_fn(|| s.next_nal()));
    }
    s.finish();
    out.extend(std::iter::from_fn(|| s.next_nal()));
    out
}

#[test]
fn splits_three_and_four_byte_start_codes_in_any_chunking() {
    let stream = [
        0xde, 0xad, 0, 0, // junk before the first start code
        0, 0, 0, 1, 0x67, 0x42, 0, 3, 0, 0, 3, 1, // emulation prevention kept
        0, 0, 1, 0x68, 0xce, 0, 0, 0, // trailing zero bits dropped
        0, 0, 1, 0x65, 0x88, 0, 0x84,
    ];
    let want: Vec<Result<Vec<u8>, AnnexBError>> = vec![
        Ok(vec![0x67, 0x42, 0, 3, 0, 0, 3, 1]),
        Ok(vec![0x68, 0xce]),
        Ok(vec![0x65, 0x88, 0, 0x84]),
    ];
    for chunk in 1..=stream.len() {
        assert_eq!(split(&stream, &[chunk]), want, "chunks of {chunk}");
    }
    assert_eq!(split(&stream, &[3, 1, 4, 1, 5, 9, 2, 6]), want);
}

#[test]
fn a_nal_ends_only_when_the_next_start_code_or_finish_proves_it() {
    let mut s = NalSplitter::new();
    s.push(&[0, 0, 0, 1, 0x65, 0xaa, 0, 0]);
    assert_eq!(s.next_nal(), None, "00 00 could still be data");
    s.push(&[0]);
    assert_eq!(s.next_nal(), None);
    s.push(&[1, 0x41]);
    assert_eq!(s.next_nal(), Some(Ok(vec![0x65, 0xaa])));
    assert_eq!(s.next_nal(), None);
    s.finish();
    assert_eq!(s.next_nal(), Some(Ok(vec![0x41])));
    // After a buffer boundary, bytes before a start code are junk.
    s.push(&[0x41, 0x42, 0, 0, 1, 0x06, 5]);
    s.finish();
    assert_eq!(s.next_nal(), Some(Ok(vec![0x06, 5])));
    assert_eq!(s.next_nal(), None);
}

#[test]
fn resync_drops_the_nal_in_progress() {
    let mut s = NalSplitter::new();
    s.push(&[0, 0, 1, 0x41, 0xaa, 0, 0, 1, 0x41, 0xbb, 0, 0]);
    s.resync();
    s.push(&[1, 0x41, 0xcc, 0, 0, 1, 0x41, 0xdd]);
    s.finish();
    let got: Vec<_> = std::iter::from_fn(|| s.next_nal()).collect();
    assert_eq!(got, vec![Ok(vec![0x41, 0xaa]), Ok(vec![0x41, 0xdd])]);
}

#[test]
fn a_nal_over_the_cap_is_an_error_and_the_next_one_is_found() {
    let mut s = NalSplitter::new();
    s.push(&[0, 0, 0, 1, 0x65]);
    let big = vec![0xaa; 64 * 1024];
    for _ in 0..(5 * 1024 * 1024 / big.len()) {
        s.push(&big);
        assert!(s.nal.capacity() <= MAX_NAL_BYTES, "memory stays bounded");
    }
    s.push(&[0, 0, 1, 0x41, 0x9a, 0, 0, 1, 0x41, 0x9b]);
    s.finish();
    let got: Vec<_> = std::iter::from_fn(|| s.next_nal()).collect();
    assert_eq!(
        got,
        vec![
            Err(AnnexBError::NalTooLarge {
                limit: MAX_NAL_BYTES
            }),
            Ok(vec![0x41, 0x9a]),
            Ok(vec![0x41, 0x9b]),
        ]
    );
}

#[test]
fn zeros_count_toward_the_cap() {
    let mut s = NalSplitter::with_limit(8);
    s.push(&[0, 0, 1, 0x65]);
    s.push(&[0; 100]);
    s.push(&[7, 0, 0, 1, 0x41]);
    s.finish();
    assert_eq!(
        s.next_nal(),
        Some(Err(AnnexBError::NalTooLarge { limit: 8 }))
    );
    assert_eq!(s.next_nal(), Some(Ok(vec![0x41])));
}

#[test]
fn the_bit_reader_skips_emulation_prevention_and_stops_at_the_end() {
    // 00 00 03 01: the 03 is not data.
    let mut r = BitReader::new(&[0, 0, 3, 1]);
    assert_eq!(r.bits(24).unwrap(), 1);
    assert_eq!(r.flag(), Err(HeaderError::Truncated));
    let mut w = BitWriter::default();
    w.ue(0)
        .ue(1)
        .ue(2)
        .ue(254)
        .se(1)
        .se(-1)
        .se(-300)
        .ue(u32::MAX - 1);
    let nal = w.nal(0x07);
    let mut r = BitReader::new(&nal[1..]);
    assert_eq!(r.ue().unwrap(), 0);
    assert_eq!(r.ue().unwrap(), 1);
    assert_eq!(r.ue().unwrap(), 2);
    assert_eq!(r.ue().unwrap(), 254);
    assert_eq!(r.se().unwrap(), 1);
    assert_eq!(r.se().unwrap(), -1);
    assert_eq!(r.se().unwrap(), -300);
    assert_eq!(r.ue().unwrap(), u32::MAX - 1);
    // 33 leading zeros: no ue(v) is that long.
    let mut r = BitReader::new(&[0, 0, 0, 0, 0, 0x80]);
    assert_eq!(r.ue(), Err(HeaderError::ExpGolombTooLong));
    let mut r = BitReader::new(&[0x00]);
    assert_eq!(r.ue(), Err(HeaderError::Truncated));
}

/// A High-profile SPS with everything before the size that baseline
/// lacks: 4:2:0 with a scaling matrix (one list ended early by a zero
/// scale, one full), POC type 1 with a cycle, fields, and cropping.
fn high_sps(chroma: u32, lists: &[bool]) -> Vec<u8> {
    let mut w = BitWriter::default();
    w.u(8, 100).u(8, 0).u(8, 40).ue(0);
    w.ue(chroma);
    if chroma == 3 {
        w.u(1, 0); // separate_colour_plane_flag
    }
    w.ue(2).ue(2).u(1, 0); // 10-bit, no bypass
    w.u(1, 1); // seq_scaling_matrix_present_flag
    for (i, &present) in lists.iter().enumerate() {
        w.u(1, present as u32);
        if present {
            let size = if i < 6 { 16 } else { 64 };
            if i % 2 == 0 {
                // Brings next scale to 0 at once: the list ends.
                w.se(-8);
            } else {
                for j in 0..size {
                    w.se(if j % 2 == 0 { 5 } else { -3 });
                }
            }
        }
    }
    w.ue(0); // log2_max_frame_num_minus4
    w.ue(1).u(1, 0).se(-2).se(3).ue(2).se(1).se(-1); // POC type 1
    w.ue(4).u(1, 0); // max_num_ref_frames, gaps
    w.ue(119).ue(33); // 1920 wide, 34 map units = 68 MB rows as fields
    w.u(1, 0).u(1, 1); // frame_mbs_only = 0, mb_adaptive_frame_field
    w.u(1, 1); // direct_8x8_inference
    w.u(1, 1).ue(0).ue(0).ue(0).ue(2); // crop bottom 2 units of 4 rows
    w.u(1, 0); // no VUI
    w.nal(0x67)
}

#[test]
fn openh264_sps_sizes_with_and_without_cropping() {
    use crate::encode::VideoEncoder;
    use crate::encode::openh264::OpenH264;
    // 720 is 45 macroblock rows exactly; 360, 1080 and 1366 need cropping.
    for (w, h) in [(1280, 720), (640, 360), (1920, 1080), (1366, 768)] {
        let settings = crate::encode::EncoderSettings {
            width: w,
            height: h,
            fps: 30,
            bitrate_kbps: 1000,
            threads: 1,
            slice_bytes: crate::encode::DEFAULT_SLICE_BYTES,
        };
        let mut enc = OpenH264::new(settings).unwrap();
        let black = crate::frame::RawFrame::black(w as usize, h as usize);
        let idr = enc.encode(&black, true).unwrap().unwrap();
        let nal = crate::encode::level::nal_units(&idr.data)
            .find(|n| n[0] & 0x1f == 7)
            .expect("an SPS");
        let sps = parse_sps(nal).unwrap();
        assert_eq!((sps.width, sps.height), (w, h));
        assert_eq!((sps.profile_idc, sps.chroma_format_idc), (66, 1));
        assert!(sps.frame_mbs_only);
        let level = crate::encode::level::sps_profile_level(&idr.data);
        assert_eq!(
            level,
            Some((sps.profile_idc, sps.constraint_flags, sps.level_idc))
        );
    }
}

#[test]
fn a_high_profile_sps_with_scaling_matrices_gives_its_size() {
    let lists = [true, true, false, true, false, false, true, true];
    let sps = parse_sps(&high_sps(1, &lists)).unwrap();
    assert_eq!(
        sps,
        Sps {
            profile_idc: 100,
            constraint_flags: 0,
            level_idc: 40,
            seq_parameter_set_id: 0,
            chroma_format_idc: 1,
            // 10-bit luma and chroma.
            bit_depth_luma_minus8: 2,
            bit_depth_chroma_minus8: 2,
            frame_mbs_only: false,
            // 68 MB rows = 1088, less 2 crop units of 2 * 2 rows.
            width: 1920,
            height: 1080,
            colour: None,
        }
    );
    assert_eq!(sps.profile_level_id(), 0x640028);
    // 4:4:4 has twelve lists, and a crop unit of 1 x 2 (fields).
    let sps = parse_sps(&high_sps(3, &[true; 12])).unwrap();
    assert_eq!(
        (sps.chroma_format_idc, sps.width, sps.height),
        (3, 1920, 1084)
    );
}

#[test]
fn x264s_high_profile_1080p_sps() {
    // As libx264 writes it (High 4.0, VUI): a real SPS with the fields
    // baseline lacks, and emulation prevention in its VUI.
    let sps = [
        0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78, 0x02, 0x27, 0xe5, 0xc0, 0x44, 0x00, 0x00,
        0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x60, 0xc6, 0x58,
    ];
    let sps = parse_sps(&sps).unwrap();
    assert_eq!((sps.width, sps.height), (1920, 1080));
    assert_eq!((sps.chroma_format_idc, sps.frame_mbs_only), (1, true));
    assert_eq!(sps.profile_level_id(), 0x640028);
}

#[test]
fn a_broken_sps_is_an_error_at_every_length() {
    let sps = high_sps(1, &[true; 8]);
    for len in 0..sps.len() - 1 {
        assert!(parse_sps(&sps[..len]).is_err(), "cut at {len}");
    }
    assert_eq!(
        parse_sps(&[0x68, 0x42]),
        Err(HeaderError::WrongType {
            expected: 7,
            got: 8
        })
    );
    assert_eq!(parse_sps(&[0xe7, 0x42]), Err(HeaderError::ForbiddenBit));
    // A crop bigger than the picture.
    let mut w = BitWriter::default();
    w.u(8, 66)
        .u(8, 0xc0)
        .u(8, 30)
        .ue(0)
        .ue(0)
        .ue(2)
        .ue(1)
        .u(1, 0);
    w.ue(0)
        .ue(0)
        .u(1, 1)
        .u(1, 1)
        .u(1, 1)
        .ue(4)
        .ue(4)
        .ue(0)
        .ue(0);
    assert!(matches!(
        parse_sps(&w.nal(0x67)),
        Err(HeaderError::OutOfRange {
            field: "frame_crop_offset",
            ..
        })
    ));
}

#[test]
fn slice_headers_give_first_mb_and_type() {
    let mut w = BitWriter::default();
    w.ue(0).ue(6).ue(0); // first_mb 0, B (all slices), pps 0
    let b = w.nal(0x01);
    assert_eq!(
        parse_slice_header(&b).unwrap(),
        SliceHeader {
            first_mb_in_slice: 0,
            slice_type: SliceType::B
        }
    );
    let mut w = BitWriter::default();
    w.ue(396).ue(7).ue(0);
    let i = parse_slice_header(&w.nal(0x65)).unwrap();
    assert_eq!((i.first_mb_in_slice, i.slice_type), (396, SliceType::I));
    let mut w = BitWriter::default();
    w.ue(0).ue(10);
    assert!(parse_slice_header(&w.nal(0x41)).is_err(), "slice_type 10");
    assert!(parse_slice_header(&[0x41]).is_err());
    assert!(parse_slice_header(&[0x67, 0x80]).is_err());
}

#[test]
fn access_units_begin_after_slices() {
    let mut b = AuBoundary::new();
    let at = |mb| SliceHeader {
        first_mb_in_slice: mb,
        slice_type: SliceType::P,
    };
    assert!(!b.starts_new(NalType::Sps, None), "nothing before it");
    assert!(!b.starts_new(NalType::Pps, None));
    assert!(!b.starts_new(NalType::Idr, Some(&at(0))));
    assert!(!b.starts_new(NalType::Idr, Some(&at(40))));
    assert!(b.starts_new(NalType::Slice, Some(&at(0))), "next picture");
    assert!(!b.starts_new(NalType::Slice, Some(&at(40))));
    assert!(b.starts_new(NalType::Aud, None));
    assert!(!b.starts_new(NalType::Sei, None), "same AU as the AUD");
    assert!(!b.starts_new(NalType::Slice, Some(&at(0))));
    assert!(b.starts_new(NalType::Sei, None));
    assert!(!b.starts_new(NalType::Slice, Some(&at(0))));
    assert!(!b.starts_new(NalType::Other(12), None), "filler stays");
    b.reset();
    assert!(
        !b.starts_new(NalType::Slice, Some(&at(0))),
        "after a buffer end"
    );
}

/// Annex B: each NAL behind a 4-byte start code.
fn annex_b(nals: &[Vec<u8>]) -> Vec<u8> {
    nals.iter()
        .flat_map(|n| [&[0, 0, 0, 1][..], n].concat())
        .collect()
}

fn slice(kind: u8, first_mb: u32, slice_type: u32) -> Vec<u8> {
    let mut w = BitWriter::default();
    w.ue(first_mb).ue(slice_type).ue(0).u(8, 0xa5);
    w.nal(kind)
}

/// Feeds `stream` in reads of `chunk` bytes until the probe decides.
fn probe_stream(stream: &[u8], chunk: usize) -> Result<Option<String>, String> {
    let mut probe = H264Probe::for_stream();
    for piece in stream.chunks(chunk) {
        if let v @ (Ok(Some(_)) | Err(_)) = probe.feed(piece) {
            return v;
        }
    }
    Ok(None)
}

#[test]
fn a_stream_probe_reads_a_pipe_cut_anywhere() {
    use crate::encode::VideoEncoder;
    use crate::encode::openh264::OpenH264;
    let settings = crate::encode::EncoderSettings {
        width: 640,
        height: 360,
        fps: 30,
        bitrate_kbps: 800,
        threads: 1,
        slice_bytes: crate::encode::DEFAULT_SLICE_BYTES,
    };
    let mut enc = OpenH264::new(settings).unwrap();
    let mut stream = Vec::new();
    let mut frame = crate::frame::RawFrame::black(640, 360);
    for n in 0..12u8 {
        frame.data[..640 * 8].fill(16 + n * 8);
        if let Some(f) = enc.encode(&frame, n == 0).unwrap() {
            stream.extend_from_slice(&f.data);
        }
    }
    let (profile, constraints, level) =
        crate::encode::level::sps_profile_level(&stream).expect("an SPS");
    let id = format!("{profile:02x}{constraints:02x}{level:02x}");
    assert!(id.starts_with("42"), "{id}");
    for chunk in [1, 2, 3, 5, 7, 64, 1000, 4096, 65536] {
        assert_eq!(
            probe_stream(&stream, chunk),
            Ok(Some(id.clone())),
            "reads of {chunk}"
        );
    }
}

#[test]
fn a_stream_probe_waits_for_the_start_code_that_ends_a_nal() {
    let mut nals = vec![high_sps(1, &[false; 8])];
    nals.extend((0..PROBE_SLICES as u32).map(|i| slice(0x41, i * 10, 5)));
    let stream = annex_b(&nals);
    let mut probe = H264Probe::for_stream();
    assert_eq!(probe.feed(&stream), Ok(None), "the last slice may go on");
    assert_eq!(probe.feed(&[0, 0]), Ok(None));
    assert_eq!(probe.feed(&[0, 1]), Ok(Some("640028".into())));
    // Whole buffers are finished at their end: the same bytes suffice.
    assert_eq!(
        H264Probe::default().feed(&stream),
        Ok(Some("640028".into()))
    );
}

#[test]
fn a_stream_probe_refuses_b_frames_in_any_chunking() {
    let nals = [
        high_sps(1, &[false; 8]),
        slice(0x65, 0, 7),
        slice(0x41, 0, 5),
        slice(0x01, 0, 6),
        slice(0x41, 0, 5),
    ];
    let stream = annex_b(&nals);
    for chunk in [1, 3, 8, stream.len()] {
        let verdict = probe_stream(&stream, chunk);
        assert!(
            verdict.as_ref().is_err_and(|e| e.contains("B-frames")),
            "reads of {chunk}: {verdict:?}"
        );
    }
}
