//! The camera's start: the source opened (or the reason it was not), and
//! the capture thread that feeds the encoders.

use super::*;

/// The capture thread and the rtc task's roads to it: what the camera is
/// and offers, settings viewers ask for, and the camera's refusals.
pub(super) struct Camera {
    pub(super) thread: std::thread::JoinHandle<()>,
    pub(super) status: watch::Receiver<SourceInfo>,
    pub(super) set_control: std_mpsc::SyncSender<SetControl>,
    pub(super) refusals: mpsc::Receiver<ControlRefused>,
}

pub(super) fn start_capture(
    config: &Config,
    want: Want,
    size: (usize, usize),
    source: Option<Source>,
    tap: &Arc<FrameTap>,
    captured: &Arc<AtomicU64>,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Camera> {
    let info = source.as_ref().map_or_else(
        || SourceInfo::none(size.0, size.1, config.fps),
        |s| s.info(),
    );
    let (status_tx, status) = watch::channel(info);
    // Settings viewers ask for: a few at a time (a slider sends at most
    // five a second per viewer); a full road refuses the next.
    let (set_control, requests) = std_mpsc::sync_channel(SETTINGS_QUEUE);
    let (refusals_tx, refusals) = mpsc::channel(SETTINGS_QUEUE);
    let thread = Capture {
        spec: config.source.clone(),
        want,
        size,
        sink: tap.clone(),
        status: status_tx,
        captured: captured.clone(),
        stop: stop.clone(),
        control: ControlRoad {
            requests,
            refusals: refusals_tx,
            saved: Saved::load(&config.state_dir),
        },
    }
    .spawn(source)
    .context("starting the capture thread")?;
    Ok(Camera {
        thread,
        status,
        set_control,
        refusals,
    })
}

/// The source at start. A camera that is missing (or broken) is not a
/// failure: rtcam serves its page, shows the "camera lost" slate, and the
/// capture thread keeps looking for it.
pub(super) async fn open_source(config: &Config, want: Want) -> Option<Source> {
    let spec = config.source.clone();
    let opened = tokio::task::spawn_blocking(move || Source::open(&spec, &want)).await;
    match opened {
        Ok(Ok(source)) => {
            let info = source.info();
            tracing::info!("video source: {} ({})", source.describe(), info.why);
            Some(source)
        }
        Ok(Err(e)) => {
            tracing::error!(
                "video source '{}' is not there ({e}); serving the \"camera lost\" slate and looking for it every second",
                config.source
            );
            None
        }
        Err(e) => {
            tracing::error!("opening the video source: {e}");
            None
        }
    }
}
