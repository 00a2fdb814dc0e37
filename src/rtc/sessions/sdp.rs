//! What the SDP says: which of our codecs a viewer's media carries, and
//! the words errors use to name codecs.

use str0m::format::Codec;
use str0m::media::Pt;

use crate::encode::SdpParams;
use crate::encode::level::h264_profile;
use crate::frame::VideoCodec;
use crate::rtc::viewer::Viewer;

/// The first of our codecs (in preference order) that the negotiated media
/// carries, with the payload type the browser gave it.
pub(super) fn bind_codec(
    v: &mut Viewer,
    mid: str0m::media::Mid,
    ours: &[SdpParams],
) -> Option<(VideoCodec, Pt)> {
    let writer = v.rtc.writer(mid)?;
    let params: Vec<_> = writer.payload_params().collect();
    ours.iter().find_map(|want| {
        params
            .iter()
            .find(|p| {
                let spec = p.spec();
                match want {
                    SdpParams::H264 { profile_level_id } => {
                        spec.codec == Codec::H264
                            && spec.format.packetization_mode == Some(1)
                            && spec.format.profile_level_id.and_then(h264_profile)
                                == h264_profile(*profile_level_id)
                    }
                    SdpParams::Vp8 => spec.codec == Codec::Vp8,
                }
            })
            .map(|p| (want.codec(), p.pt()))
    })
}

/// A codec we send, as an error names it to the owner.
pub(super) fn describe_codec(params: &SdpParams) -> String {
    match params {
        SdpParams::H264 { profile_level_id } => {
            let profile = match h264_profile(*profile_level_id) {
                Some(p) => format!("{p:?}"),
                None => "unknown profile".into(),
            };
            format!(
                "H.264 {profile} (profile-level-id {profile_level_id:06x}, packetization-mode=1)"
            )
        }
        SdpParams::Vp8 => "VP8".into(),
    }
}

/// The mid of the first video section of our answer.
pub(super) fn video_mid(answer: &str) -> Option<str0m::media::Mid> {
    mid_of(answer, "video")
}

/// The mid of the first section of `kind` (`video`, `audio`).
pub(super) fn mid_of(sdp: &str, kind: &str) -> Option<str0m::media::Mid> {
    let mut in_kind = false;
    for line in sdp.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            in_kind = m.starts_with(kind);
        } else if let (true, Some(mid)) = (in_kind, line.strip_prefix("a=mid:")) {
            return Some(mid.trim().into());
        }
    }
    None
}

/// The video codecs an offer names (`a=rtpmap` names outside audio and
/// data sections, without retransmission and FEC entries), for an error
/// that tells the owner what the browser could do.
pub(super) fn offered_video_codecs(sdp: &str) -> Vec<String> {
    let mut in_video = false;
    let mut names: Vec<String> = Vec::new();
    for line in sdp.lines().take(2_000) {
        if let Some(m) = line.strip_prefix("m=") {
            in_video = m.starts_with("video");
        } else if let (true, Some(map)) = (in_video, line.strip_prefix("a=rtpmap:")) {
            let name = map
                .split_whitespace()
                .nth(1)
                .and_then(|n| n.split('/').next());
            if let Some(name) =
                name.filter(|n| !matches!(*n, "rtx" | "red" | "ulpfec" | "flexfec-03"))
            {
                // The client's text goes into logs and replies: printable only.
                let name: String = truncate(name, 16)
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                    .collect();
                if !name.is_empty() && !names.contains(&name) && names.len() < 16 {
                    names.push(name);
                }
            }
        }
    }
    names
}

/// str0m's parse errors span lines and carry a pointer address; keep the
/// lines that say what was expected.
pub(super) fn one_line(msg: &str) -> String {
    msg.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains("PointerOffset"))
        .collect::<Vec<_>>()
        .join("; ")
}

pub(super) fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
