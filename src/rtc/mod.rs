//! The data plane's network side: every viewer's WebRTC session, all on one
//! UDP socket, driven by one tokio task.
//!
//! The control plane talks to that task through [`RtcHandle`] (commands in,
//! an end notice out per viewer); encoded frames arrive on a channel from
//! the encoder thread; keyframe asks go back to it.

pub mod rate;
pub mod redundancy;
pub mod sessions;
pub mod socket;
pub mod udp;
pub mod viewer;
pub mod whip;

use tokio::sync::{mpsc, oneshot};

/// The largest datagram rtcam sends by default (`--mtu`): WireGuard and
/// Tailscale drop packets over about 1280 bytes, less their own headers, so
/// a VPN viewer gets nothing of a stream cut for Ethernet's 1500.
pub const DEFAULT_MTU: u32 = 1150;
/// The range `--mtu` takes: from a little over IPv4's minimum reassembly
/// size (576 bytes, str0m's floor for its own target, which sits under
/// ours by the room RTP headers take) to Ethernet's payload.
pub const MTU_RANGE: std::ops::RangeInclusive<u32> = 640..=1500;

pub use sessions::{PublishSpec, SessionConfig, SessionError, SessionEvent, Sessions};
pub use viewer::{EndReason, ViewerId};

/// What the control plane asks of the rtc task.
pub enum Command {
    AddViewer {
        offer: String,
        from: std::net::IpAddr,
        /// What it may do on its data channel.
        grant: Grant,
        /// Told once, when the session ends (for any reason).
        ended: oneshot::Sender<EndReason>,
        reply: oneshot::Sender<Result<(ViewerId, String), SessionError>>,
    },
    Candidate {
        id: ViewerId,
        candidate: String,
        reply: oneshot::Sender<Result<(), SessionError>>,
    },
    End {
        id: ViewerId,
        reason: EndReason,
        reply: oneshot::Sender<Result<(), SessionError>>,
    },
    Stats {
        reply: oneshot::Sender<RtcStats>,
    },
    /// Start a WHIP publish: its offer comes back; it is told of its
    /// connection and end on `events`.
    AddPublisher {
        spec: PublishSpec,
        events: mpsc::Sender<PeerEvent>,
        reply: oneshot::Sender<Result<(ViewerId, String), SessionError>>,
    },
    /// The receiver's answer for a publish.
    PublisherAnswer {
        id: ViewerId,
        answer: String,
        reply: oneshot::Sender<Result<(), SessionError>>,
    },
    /// A picture shared in the chat.
    ChatImage {
        n: u64,
        reply: oneshot::Sender<Option<crate::control::images::Image>>,
    },
}

/// What happens to a publish, for its WHIP task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    Connected(ViewerId),
    Ended(ViewerId, EndReason),
}

/// What a viewer may do on its data channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The name of the token it was admitted with (WHEP): its fixed chat
    /// name. `None` for the page's logged-in viewers.
    pub token_name: Option<String>,
    /// Whether it may change the camera's settings.
    pub may_control: bool,
}

impl Grant {
    /// A viewer of the page: logged in (or no authentication), so the
    /// owner, who may change the camera.
    pub fn owner() -> Grant {
        Grant {
            token_name: None,
            may_control: true,
        }
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RtcStats {
    pub viewers: usize,
    pub frames_in: u64,
    /// The largest datagram sent so far, in bytes (within `--mtu`).
    pub largest_datagram: usize,
    /// Picture uploads cancelled for coming too slowly (`/metrics` has it).
    #[serde(skip)]
    pub uploads_cancelled: u64,
    /// Each WHIP publish's link (`/api/status` shows it by target).
    #[serde(skip)]
    pub publishes: Vec<(
        ViewerId,
        Option<crate::frame::VideoCodec>,
        viewer::ViewerStats,
    )>,
    /// Each viewer's link (not in `/api/status`: `/metrics` has it).
    #[serde(skip)]
    pub links: Vec<(
        ViewerId,
        Option<crate::frame::VideoCodec>,
        viewer::ViewerStats,
    )>,
}

impl RtcStats {
    /// A WHIP publish's link, by its peer.
    pub fn publish(&self, peer: Option<ViewerId>) -> Option<&viewer::ViewerStats> {
        self.publishes
            .iter()
            .find(|(id, _, _)| Some(*id) == peer)
            .map(|(_, _, s)| s)
    }
}

/// A viewer as the control plane holds it.
pub struct ViewerTicket {
    pub id: ViewerId,
    pub answer: String,
    pub ended: oneshot::Receiver<EndReason>,
}

#[derive(Debug, thiserror::Error)]
pub enum RtcCallError {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("the media engine is not running")]
    Gone,
}

/// Cheap to clone; one per HTTP connection.
#[derive(Clone)]
pub struct RtcHandle {
    tx: mpsc::Sender<Command>,
}

impl RtcHandle {
    pub fn new(tx: mpsc::Sender<Command>) -> Self {
        RtcHandle { tx }
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, RtcCallError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| RtcCallError::Gone)?;
        rx.await.map_err(|_| RtcCallError::Gone)
    }

    pub async fn add_viewer(
        &self,
        offer: String,
        from: std::net::IpAddr,
        grant: Grant,
    ) -> Result<ViewerTicket, RtcCallError> {
        let (ended, ended_rx) = oneshot::channel();
        let (id, answer) = self
            .call(|reply| Command::AddViewer {
                offer,
                from,
                grant,
                ended,
                reply,
            })
            .await??;
        Ok(ViewerTicket {
            id,
            answer,
            ended: ended_rx,
        })
    }

    pub async fn add_candidate(&self, id: ViewerId, candidate: String) -> Result<(), RtcCallError> {
        Ok(self
            .call(|reply| Command::Candidate {
                id,
                candidate,
                reply,
            })
            .await??)
    }

    pub async fn end(&self, id: ViewerId, reason: EndReason) -> Result<(), RtcCallError> {
        Ok(self
            .call(|reply| Command::End { id, reason, reply })
            .await??)
    }

    pub async fn add_publisher(
        &self,
        spec: PublishSpec,
        events: mpsc::Sender<PeerEvent>,
    ) -> Result<(ViewerId, String), RtcCallError> {
        Ok(self
            .call(|reply| Command::AddPublisher {
                spec,
                events,
                reply,
            })
            .await??)
    }

    pub async fn publisher_answer(&self, id: ViewerId, answer: String) -> Result<(), RtcCallError> {
        Ok(self
            .call(|reply| Command::PublisherAnswer { id, answer, reply })
            .await??)
    }

    pub async fn stats(&self) -> Result<RtcStats, RtcCallError> {
        self.call(|reply| Command::Stats { reply }).await
    }

    pub async fn chat_image(
        &self,
        n: u64,
    ) -> Result<Option<crate::control::images::Image>, RtcCallError> {
        self.call(|reply| Command::ChatImage { n, reply }).await
    }
}
