//! Opus through libopus (the `opus` crate; libopus 1.6 built from source
//! and linked statically, so every board has the same codec): one encoder
//! for the microphone, shared by every listener like the video's, and one
//! decoder for the talker's voice.

use std::sync::Arc;

use opus::{Application, Bitrate, Channels, Decoder, Encoder};
use thiserror::Error;

use super::jitter::Playout;
use super::{FRAME, RATE};

#[derive(Debug, Error)]
pub enum OpusError {
    #[error("the Opus encoder: {0}")]
    Encoder(opus::Error),
    #[error("the Opus decoder: {0}")]
    Decoder(opus::Error),
}

/// The most loss the encoder plans for: in-band FEC carries a coarse copy
/// of each frame in the next only while the encoder expects loss, and takes
/// bits from the frame itself to do it.
const MAX_EXPECTED_LOSS_PERCENT: u8 = 30;
/// The largest Opus packet we make (a 20 ms frame at 128 kbit/s is 320 B).
const MAX_PACKET: usize = 1_275;

pub struct VoiceEncoder {
    encoder: Encoder,
    out: Vec<u8>,
    /// The loss it plans for now, percent.
    expected_loss: u8,
}

impl VoiceEncoder {
    /// Mono voice at `bitrate_kbps`, in-band FEC on, 20 ms frames.
    pub fn new(bitrate_kbps: u32) -> Result<Self, OpusError> {
        let mut encoder =
            Encoder::new(RATE, Channels::Mono, Application::Voip).map_err(OpusError::Encoder)?;
        encoder
            .set_bitrate(Bitrate::Bits(bitrate_kbps as i32 * 1000))
            .and_then(|()| encoder.set_inband_fec(true))
            .map_err(OpusError::Encoder)?;
        Ok(VoiceEncoder {
            encoder,
            out: vec![0; MAX_PACKET],
            expected_loss: 0,
        })
    }

    /// The loss the listeners' links report, percent: in-band FEC follows
    /// it, as WebRTC's own senders do. On a clean link every bit goes to the
    /// voice (FEC at 10 % expected loss costs a 32 kbit/s voice enough to
    /// blur consonants, and garbles the audio stamp at some alignments).
    pub fn set_expected_loss(&mut self, percent: u8) {
        let percent = percent.min(MAX_EXPECTED_LOSS_PERCENT);
        if percent != self.expected_loss
            && self.encoder.set_packet_loss_perc(percent as i32).is_ok()
        {
            self.expected_loss = percent;
        }
    }

    /// One 20 ms frame ([`FRAME`] samples) to one packet.
    pub fn encode(&mut self, pcm: &[i16]) -> Result<Arc<[u8]>, OpusError> {
        debug_assert_eq!(pcm.len(), FRAME);
        let n = self
            .encoder
            .encode(pcm, &mut self.out)
            .map_err(OpusError::Encoder)?;
        Ok(Arc::from(&self.out[..n]))
    }

    /// Samples of delay the encoder adds (its look-ahead).
    pub fn lookahead(&mut self) -> usize {
        self.encoder.get_lookahead().unwrap_or(0).max(0) as usize
    }
}

pub struct VoiceDecoder {
    decoder: Decoder,
    pcm: Vec<i16>,
    /// Frames made up by concealment, and recovered from the next packet's FEC.
    pub concealed: u64,
    pub recovered: u64,
    /// Packets it could not decode (concealed instead).
    pub corrupt: u64,
}

impl VoiceDecoder {
    pub fn new() -> Result<Self, OpusError> {
        Ok(VoiceDecoder {
            decoder: Decoder::new(RATE, Channels::Mono).map_err(OpusError::Decoder)?,
            pcm: vec![0; FRAME * 6], // up to 120 ms, the longest Opus packet
            concealed: 0,
            recovered: 0,
            corrupt: 0,
        })
    }

    /// The samples for one slot of the jitter buffer's playout. A packet
    /// that does not decode is concealed (never an error: it came from the
    /// network).
    pub fn decode(&mut self, slot: &Playout) -> &[i16] {
        let n = match slot {
            Playout::Silence => {
                self.pcm[..FRAME].fill(0);
                FRAME
            }
            Playout::Packet(p) => match self.decoder.decode(p, &mut self.pcm, false) {
                Ok(n) => n,
                Err(_) => {
                    self.corrupt += 1;
                    self.conceal()
                }
            },
            Playout::Fec(next) => {
                // FEC restores exactly one frame's worth of the lost slot.
                match self.decoder.decode(next, &mut self.pcm[..FRAME], true) {
                    Ok(n) => {
                        self.recovered += 1;
                        n
                    }
                    Err(_) => self.conceal(),
                }
            }
            Playout::Conceal => self.conceal(),
        };
        &self.pcm[..n]
    }

    fn conceal(&mut self) -> usize {
        self.concealed += 1;
        self.decoder
            .decode(&[], &mut self.pcm[..FRAME], false)
            .unwrap_or_else(|_| {
                self.pcm[..FRAME].fill(0);
                FRAME
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::stamp;

    #[test]
    fn the_stamp_survives_encode_and_decode_with_a_lost_packet_recovered() {
        let start_ns = 1_767_225_600_000_000_000u64; // a slot boundary
        let mut pcm = vec![0i16; FRAME * 100];
        stamp::render_i16(start_ns, RATE, &mut pcm);
        let mut enc = VoiceEncoder::new(32).unwrap();
        enc.set_expected_loss(10); // a lossy listener: FEC in every packet
        let packets: Vec<Arc<[u8]>> = pcm.chunks(FRAME).map(|f| enc.encode(f).unwrap()).collect();
        let mut dec = VoiceDecoder::new().unwrap();
        let mut out = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            // Packet 30 lost (inside the stamp at 500 ms + 100 ms): FEC from 31.
            let slot = if i == 30 {
                Playout::Fec(packets[31].to_vec())
            } else {
                Playout::Packet(p.to_vec())
            };
            out.extend_from_slice(dec.decode(&slot));
        }
        assert_eq!(dec.recovered, 1);
        let found = stamp::detect_i16(&out, RATE);
        let slots: Vec<u16> = found.iter().map(|d| d.slot).collect();
        let first = stamp::slot_of(start_ns);
        assert!(slots.len() >= 3, "stamps decoded: {slots:?}");
        for (i, d) in found.iter().enumerate() {
            let want_pos = (i as f64) * 0.5 * RATE as f64 + enc.lookahead() as f64;
            assert_eq!(d.slot, first.wrapping_add(i as u16));
            assert!((d.pos - want_pos).abs() < 48.0, "{} vs {want_pos}", d.pos);
        }
    }

    #[test]
    fn garbage_is_concealed_not_an_error() {
        let mut dec = VoiceDecoder::new().unwrap();
        let n = dec
            .decode(&Playout::Packet(vec![0xff, 0xff, 0xff, 0x01, 0x02]))
            .len();
        assert_eq!(n, FRAME);
        assert_eq!(dec.decode(&Playout::Conceal).len(), FRAME);
    }
}
