//! Coded bytes into pictures: CAPTURE buffers joined into one access unit
//! (parameter sets that came alone, a picture split over full buffers),
//! and SPS/PPS put back in front of an IDR that lacks them (a driver that
//! refused REPEAT_SEQ_HEADER).

use v4l2_sys_mit as sys;

use crate::encode::level;

/// One picture's bytes as the driver gave them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Coded {
    pub(super) data: Vec<u8>,
    /// The driver's V4L2_BUF_FLAG_KEYFRAME.
    pub(super) key_flag: bool,
}

#[derive(Debug, Default)]
pub(super) struct Assembler {
    /// CAPTURE bytes of the picture under way.
    partial: Vec<u8>,
    /// The last SPS and PPS that went out, for an IDR that comes without.
    headers: Vec<u8>,
}

/// NAL unit types in an Annex-B access unit.
pub(super) fn nal_types(data: &[u8]) -> impl Iterator<Item = u8> + '_ {
    level::nal_units(data).filter_map(|n| n.first().map(|b| b & 0x1f))
}

/// The SPS and PPS of an access unit, with start codes, if it has an SPS.
fn parameter_sets(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for nal in level::nal_units(data) {
        if matches!(nal.first().map(|b| b & 0x1f), Some(7 | 8)) {
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(nal);
        }
    }
    nal_types(data).any(|t| t == 7).then_some(out)
}

impl Assembler {
    /// One CAPTURE buffer's bytes (`full`: it was filled to the brim, so the
    /// picture may go on in the next one). The picture once it is whole: it
    /// has a slice and the buffer was not full.
    pub(super) fn push(&mut self, bytes: &[u8], full: bool, flags: u32) -> Option<Coded> {
        self.partial.extend_from_slice(bytes);
        let has_slice = nal_types(&self.partial).any(|t| (1..=5).contains(&t));
        if full || !has_slice {
            return None;
        }
        Some(Coded {
            data: std::mem::take(&mut self.partial),
            key_flag: flags & sys::V4L2_BUF_FLAG_KEYFRAME != 0,
        })
    }

    /// Forgets the picture under way (its buffer came back failed).
    pub(super) fn discard(&mut self) {
        self.partial.clear();
    }

    /// A picture as it goes out, in capture order: its bytes, with the
    /// last SPS/PPS in front if it is an IDR without, and whether it is a
    /// keyframe.
    pub(super) fn finish(&mut self, coded: Coded) -> (Vec<u8>, bool) {
        let Coded { mut data, key_flag } = coded;
        let keyframe = key_flag || nal_types(&data).any(|t| t == 5);
        match parameter_sets(&data) {
            Some(sets) => self.headers = sets,
            None if keyframe && !self.headers.is_empty() => {
                data.splice(0..0, self.headers.iter().copied());
            }
            None => {}
        }
        (data, keyframe)
    }
}
