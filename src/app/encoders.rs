//! Which encoders run and what they tell viewers: H.264 (the board's
//! hardware encoder or openh264, or a camera's own H.264 passed through)
//! and VP8, probed at start.

use std::path::PathBuf;

use anyhow::Context;

use crate::config::Config;
use crate::encode::openh264::OpenH264;
use crate::encode::pool::{Factory, H264Plan};
use crate::encode::v4l2m2m::V4l2M2m;
use crate::encode::vp8::Vp8;
use crate::encode::{EncodeError, Encoder, EncoderSettings, H264Choice, SdpParams};
use crate::frame::VideoCodec;
use crate::rtc::rate::RateRange;

pub(super) struct Encoders {
    pub(super) factory: Factory,
    /// What the encoders really write, for every viewer's answer: H.264,
    /// then VP8 when libvpx started.
    pub(super) sdp: Vec<SdpParams>,
}

/// The bitrate range of every codec whose encoder follows the viewers'
/// links: from its configured rate down to a fifth of it. A passthrough
/// camera keeps its own rate.
pub(super) fn rate_ranges(
    factory: &Factory,
    sending: &[SdpParams],
) -> Vec<(VideoCodec, RateRange)> {
    sending
        .iter()
        .map(SdpParams::codec)
        .filter(|&c| !(c == VideoCodec::H264 && factory.h264 == H264Plan::Passthrough))
        .map(|c| (c, RateRange::from_ceiling(factory.settings(c).bitrate_kbps)))
        .collect()
}

/// Decides the H.264 implementation (probing the hardware encoder) and the
/// VP8 picture, and checks that both encoders start.
pub(super) fn encoders(
    config: &Config,
    width: u32,
    height: u32,
    passthrough: Option<&str>,
) -> anyhow::Result<Encoders> {
    let fps = config.fps;
    let h264_settings = EncoderSettings {
        width,
        height,
        fps,
        bitrate_kbps: config.bitrate_kbps,
        threads: config.board.encoder_threads,
        slice_bytes: crate::encode::slice_bytes_for(config.mtu),
    };
    let (vw, vh) = fit_within(
        (width, height),
        (config.vp8_size.width, config.vp8_size.height),
    );
    let vp8_settings = EncoderSettings {
        width: vw,
        height: vh,
        bitrate_kbps: (config.bitrate_kbps as u64 * (vw * vh) as u64
            / (width * height).max(1) as u64)
            .max(150) as u32,
        ..h264_settings
    };
    if let Some(id) = passthrough {
        return passthrough_encoders(id, h264_settings, vp8_settings);
    }
    let (h264, h264_sdp) = choose_h264(config, h264_settings)?;
    let factory = Factory {
        h264,
        h264_settings,
        vp8_settings,
    };
    // VP8 is for the viewers H.264 cannot serve: if libvpx does not start,
    // those are refused (their offer names no codec we have) and everyone
    // else is served as before.
    let vp8 = match probe_vp8(vp8_settings) {
        Ok(sdp) => Some(sdp),
        Err(e) => {
            tracing::error!("VP8 encoder does not start ({e}): viewers without H.264 are refused");
            None
        }
    };
    tracing::info!(
        "encoders: H.264 {} {width}x{height} @ {fps} fps, {} kbit/s, {h264_sdp}; \
         VP8 libvpx {vw}x{vh}, {} kbit/s; each starts with its first viewer",
        match &factory.h264 {
            H264Plan::OpenH264 => "openh264".to_string(),
            H264Plan::V4l2M2m(p) => format!("v4l2m2m {}", p.display()),
            H264Plan::Passthrough => "passthrough".to_string(),
        },
        h264_settings.bitrate_kbps,
        vp8_settings.bitrate_kbps,
    );
    Ok(Encoders {
        factory,
        sdp: std::iter::once(h264_sdp).chain(vp8).collect(),
    })
}

/// The picture the VP8 start-up check encodes: small, since VP8's SDP says
/// nothing of the size (`--vp8-size 160x90` peaked at 30 MB RSS, 720p at 51).
const VP8_PROBE_SIZE: (u32, u32) = (160, 90);

/// Whether libvpx encodes, with the settings the real encoder takes but at
/// [`VP8_PROBE_SIZE`]: VP8's SDP parameters are the same whatever the
/// encoder (`SdpParams::Vp8`), so the probe only checks that libvpx works,
/// and a 720p libvpx encoder allocates about 40 MB (the process's peak).
fn probe_vp8(s: EncoderSettings) -> Result<SdpParams, EncodeError> {
    let (width, height) = VP8_PROBE_SIZE;
    let tiny = EncoderSettings { width, height, ..s };
    Encoder::new(Box::new(Vp8::new(tiny)?)).probe()
}

/// The camera's own H.264 goes to viewers as it is: nothing is encoded, and
/// with no raw frames there is no VP8 (Firefox without H.264 is refused).
fn passthrough_encoders(
    profile_level_id: &str,
    h264_settings: EncoderSettings,
    vp8_settings: EncoderSettings,
) -> anyhow::Result<Encoders> {
    let id = u32::from_str_radix(profile_level_id, 16)
        .with_context(|| format!("the camera's profile-level-id '{profile_level_id}'"))?;
    let h264_sdp = SdpParams::H264 {
        profile_level_id: id,
    };
    tracing::info!(
        "encoders: none, H.264 passthrough of the camera's own stream ({h264_sdp}); \
         viewers whose browser cannot take it (and VP8-only browsers) are refused"
    );
    Ok(Encoders {
        factory: Factory {
            h264: H264Plan::Passthrough,
            h264_settings,
            vp8_settings,
        },
        sdp: vec![h264_sdp],
    })
}

/// `--encoder`: the hardware encoder when asked for (or, with auto, when the
/// board has one and it works), else openh264. The SDP parameters are read
/// from a probe frame of the encoder that will run.
fn choose_h264(config: &Config, s: EncoderSettings) -> anyhow::Result<(H264Plan, SdpParams)> {
    let software = || -> anyhow::Result<(H264Plan, SdpParams)> {
        let sdp = Encoder::new(Box::new(OpenH264::new(s)?))
            .probe()
            .context("starting the H.264 encoder (openh264)")?;
        Ok((H264Plan::OpenH264, sdp))
    };
    let hardware = |path: PathBuf| -> Result<(H264Plan, SdpParams), EncodeError> {
        let sdp = Encoder::new(Box::new(V4l2M2m::open(&path, s)?)).probe()?;
        Ok((H264Plan::V4l2M2m(path), sdp))
    };
    let board_device = config.board.hardware_encoder.clone().map(PathBuf::from);
    match &config.encoder {
        H264Choice::OpenH264 => software(),
        H264Choice::V4l2M2m(path) => {
            let path = path.clone().or(board_device).context(
                "--encoder v4l2m2m: this board has no hardware encoder; name the device (v4l2m2m:/dev/videoN)",
            )?;
            hardware(path.clone())
                .with_context(|| format!("starting the hardware H.264 encoder {}", path.display()))
        }
        H264Choice::Auto => match board_device {
            None => software(),
            Some(path) => hardware(path.clone()).or_else(|e| {
                tracing::warn!(
                    "hardware H.264 encoder {} not used ({e}); encoding with openh264",
                    path.display()
                );
                software()
            }),
        },
    }
}

/// The largest even size within `max` with the picture's aspect ratio.
fn fit_within(size: (u32, u32), max: (u32, u32)) -> (u32, u32) {
    let scale = (max.0 as f64 / size.0 as f64)
        .min(max.1 as f64 / size.1 as f64)
        .min(1.0);
    let even = |v: f64| ((v as u32) & !1).max(2);
    (even(size.0 as f64 * scale), even(size.1 as f64 * scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vp8_check_answers_what_a_full_size_encoder_would() {
        let s = EncoderSettings {
            width: 1280,
            height: 720,
            fps: 30,
            bitrate_kbps: 2000,
            threads: 2,
            slice_bytes: crate::encode::DEFAULT_SLICE_BYTES,
        };
        assert_eq!(probe_vp8(s).unwrap(), SdpParams::Vp8);
    }
}
