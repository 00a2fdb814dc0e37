//! A request body must keep arriving: after a short grace it has to keep up
//! a minimum rate, or the request ends with 408 and its connection goes.
//!
//! Before, a body declared at 60,000 bytes and sent a byte a second held
//! its connection for the whole request timeout, and 256 of them from 8
//! addresses held every slot of the table. Every body rtcam takes is small
//! (an SDP offer, a login form, a zone list: at most 64 KiB), so a client
//! that cannot send 2 KiB a second is not a client we can serve anyway.
//! The rule is [`Pace`] (sans-IO); [`Metered`] applies it to hyper's body
//! and tells the connection table when the body is whole.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::Conn;

/// How long a body may take before the rate counts.
pub const GRACE: Duration = Duration::from_secs(2);
/// The least average rate of a body after [`GRACE`], in bytes a second.
pub const MIN_RATE: u64 = 2048;

/// The pace rule: `GRACE + received / MIN_RATE` after the request's start
/// is when the next bytes must have come.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    start: Instant,
    received: u64,
}

impl Pace {
    pub fn new(start: Instant) -> Self {
        Pace { start, received: 0 }
    }

    pub fn received(&mut self, bytes: usize) {
        self.received += bytes as u64;
    }

    /// The latest time the next bytes may come.
    pub fn deadline(&self) -> Instant {
        let earned = Duration::from_millis(self.received.saturating_mul(1000) / MIN_RATE);
        self.start + GRACE + earned
    }
}

/// What a body that fell behind [`MIN_RATE`] gives its reader.
#[derive(Debug, thiserror::Error)]
#[error("the request body came slower than {MIN_RATE} bytes a second")]
pub struct TooSlow;

/// The answer to a request whose body came too slowly; the connection
/// closes after it (the rest of the body is not waited for).
pub fn too_slow() -> axum::response::Response {
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::response::IntoResponse;
    let mut r = (StatusCode::REQUEST_TIMEOUT, format!("{TooSlow}\n")).into_response();
    let close = HeaderValue::from_static("close");
    r.headers_mut().insert(header::CONNECTION, close);
    r
}

/// hyper's body, paced; it tells its connection when it is whole.
pub struct Metered<B> {
    inner: B,
    pace: Pace,
    timer: Pin<Box<tokio::time::Sleep>>,
    conn: Arc<Conn>,
}

impl<B: Body<Data = Bytes> + Unpin> Metered<B> {
    pub fn new(inner: B, conn: Arc<Conn>, now: Instant) -> Self {
        let pace = Pace::new(now);
        let timer = Box::pin(tokio::time::sleep_until(pace.deadline().into()));
        Metered {
            inner,
            pace,
            timer,
            conn,
        }
    }

    fn on_data(&mut self, frame: &Frame<Bytes>) {
        if let Some(data) = frame.data_ref() {
            self.pace.received(data.len());
            let deadline = self.pace.deadline();
            self.timer.as_mut().reset(deadline.into());
        }
        if self.inner.is_end_stream() {
            self.conn.body_done();
        }
    }
}

impl<B> Body for Metered<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.on_data(&frame);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                this.conn.body_done();
                Poll::Ready(None)
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.conn.body_too_slow();
                    Poll::Ready(Some(Err(Box::new(TooSlow))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_has_a_grace_then_must_keep_the_rate() {
        let t0 = Instant::now();
        let mut p = Pace::new(t0);
        assert_eq!(p.deadline(), t0 + GRACE);
        p.received(MIN_RATE as usize);
        assert_eq!(p.deadline(), t0 + GRACE + Duration::from_secs(1));
        // A byte a second never catches up: 60 bytes in 60 s earn 29 ms.
        let mut trickle = Pace::new(t0);
        trickle.received(60);
        assert!(trickle.deadline() < t0 + GRACE + Duration::from_millis(30));
    }

    #[test]
    fn the_largest_body_on_a_slow_phone_link_is_in_time() {
        // 64 KiB at 256 kbit/s: 2 s; its deadline grows faster than it comes.
        let t0 = Instant::now();
        let mut p = Pace::new(t0);
        let per_chunk = Duration::from_millis(125);
        let mut now = t0;
        for _ in 0..16 {
            now += per_chunk;
            assert!(now <= p.deadline(), "cut off at {:?}", now - t0);
            p.received(4096);
        }
    }
}
