//! The Pi's hardware H.264: a V4L2 stateful memory-to-memory encoder
//! (bcm2835-codec at /dev/video11), multi-planar API only.
//!
//! In the kernel's naming (dev-encoder.rst) the OUTPUT queue takes what the
//! application writes, raw frames, and the CAPTURE queue gives back the
//! coded stream. Up to three frames are in flight: `encode` copies a frame
//! into a free OUTPUT buffer, queues it, and waits for a picture for less
//! than a frame interval; pictures that come back later go out through
//! `poll_output`. The driver copies each OUTPUT buffer's timestamp to the
//! picture coded from it, so a picture finds its frame's capture time
//! however late or out of order it comes; pictures leave in capture order.
//! A late or lost picture costs its own frame; the device counts as failed
//! only on a pattern (about a second of silence or errors, or half its
//! pictures lost), and then [`Supervised`] stands openh264 in for it and
//! tries the hardware again later, until it works.
//!
//! Required of the driver: H.264 out, YU12 or NV12 in, the constrained
//! baseline profile, a bitrate control (also changed live, without a
//! keyframe) and FORCE_KEY_FRAME (checked with QUERYCTRL at open: without
//! it a joining viewer would wait for the periodic IDR). Optional, warned
//! about once and skipped when refused: the level, the I-period, repeated
//! SPS/PPS (put back in front of IDRs from the last ones seen) and the
//! frame rate.
//!
//! The layers, a file each:
//! - `device.rs`: the `Device` trait, every ioctl, mmap and poll, and the
//!   clock; `kernel.rs` is the kernel's device (the only unsafe code), the
//!   tests' `fake.rs` a driver in memory that drops, delays, reorders and
//!   fails as scripted, on simulated time.
//! - `setup.rs`: negotiation (caps, formats, controls, buffers) and where a
//!   frame's bytes go in an OUTPUT buffer.
//! - `pipeline.rs` (sans-IO): the pictures in flight, matched by timestamp,
//!   let out in capture order, written off alone when late.
//! - `health.rs` (sans-IO): when the device counts as failed.
//! - `picture.rs`: CAPTURE buffers into access units, SPS/PPS put back.
//! - `encoder.rs`: [`V4l2M2m`], the IO shell around those.
//! - `policy.rs` (sans-IO) and `supervise.rs`: [`Supervised`], the encoder
//!   the pool runs: fallback to openh264, retries with backoff, a trial
//!   beside openh264 before the hardware takes over again.

mod device;
mod encoder;
mod error;
mod health;
mod kernel;
mod picture;
mod pipeline;
mod policy;
mod setup;
mod supervise;

pub use encoder::V4l2M2m;
pub use error::M2mError;
pub use health::Failure;
pub use supervise::Supervised;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod misbehaving;
#[cfg(test)]
mod tests;
