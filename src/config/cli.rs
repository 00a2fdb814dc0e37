//! The command line (clap): every flag, its default and its help, and the
//! subcommands. [`super::Config`] merges it with the file.

use super::*;

/// rtcam: a camera you watch live in any browser, over WebRTC.
///
/// Open https://<this device>:8443/ and press Call.
#[derive(Debug, Parser, Default)]
#[command(name = "rtcam", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// TOML file with any of these settings (flags win over it).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Board profile (board/*.toml): auto detects it from the device tree
    /// [default: auto]
    #[arg(long, value_name = "NAME|auto")]
    pub board: Option<String>,
    /// HTTPS address for the page, /ws signaling and WHEP [default: 0.0.0.0:8443]
    #[arg(long, value_name = "ADDR:PORT")]
    pub http: Option<SocketAddr>,
    /// The one UDP socket all viewers' media uses [default: 0.0.0.0:8443]
    #[arg(long, value_name = "ADDR:PORT")]
    pub rtc: Option<SocketAddr>,
    /// Addresses to put in ICE candidates instead of the bound one (1:1 NAT,
    /// port forwards, QEMU); comma-separated [default: every local address]
    #[arg(long, value_name = "IP[,IP...]", value_delimiter = ',')]
    pub advertise: Option<Vec<IpAddr>>,
    /// Video source: auto (a CSI camera through rpicam-vid, else the first
    /// working V4L2 camera, else the test pattern), test, bars, rpicam[:N]
    /// (CSI camera N through rpicam-vid), or a device such as /dev/video0 or
    /// /dev/v4l/by-id/... [default: auto]
    #[arg(long, value_name = "auto|test|rpicam[:N]|/dev/videoN")]
    pub source: Option<SourceSpec>,
    /// What to take from the camera: auto (raw at the size and rate asked
    /// if it has them, else MJPEG, else H.264), raw, mjpeg, or h264. h264 is
    /// passthrough: the camera's own H.264 goes to viewers as it is (no
    /// decode, no encode; H.264 viewers only, keyframes on the camera's
    /// schedule unless it takes requests, no bitrate control; with rpicam
    /// it is the Pi's hardware encoder inside rpicam-vid) [default: auto]
    #[arg(long, value_name = "auto|raw|mjpeg|h264")]
    pub capture_format: Option<CaptureFormat>,
    /// Picture size; a camera without it gives its nearest [default: 1280x720]
    #[arg(long, value_name = "WxH")]
    pub size: Option<Size>,
    /// Frames per second [default: 30]
    #[arg(long, value_name = "N")]
    pub fps: Option<u32>,
    /// H.264 bitrate in kbit/s [default: from size and rate, 2000 at 720p30]
    #[arg(long, value_name = "KBPS")]
    pub bitrate: Option<u32>,
    /// H.264 encoder: auto (the board's hardware encoder when it opens, else
    /// openh264), openh264, or v4l2m2m[:/dev/videoN] [default: auto]
    #[arg(long, value_name = "auto|openh264|v4l2m2m[:DEV]")]
    pub encoder: Option<H264Choice>,
    /// Largest picture VP8 viewers get (software VP8 costs more than H.264);
    /// larger captures are scaled down for them [default: the board's]
    #[arg(long, value_name = "WxH")]
    pub vp8_size: Option<Size>,
    /// Most viewers at once; more are refused with a clear error [default: 16]
    #[arg(long, value_name = "N")]
    pub max_viewers: Option<usize>,
    /// Most viewers from one IP address [default: 4]
    #[arg(long, value_name = "N")]
    pub max_viewers_per_address: Option<usize>,
    /// Let clients on the loopback interface in without logging in (off by
    /// default; authentication cannot be turned off for anyone else)
    #[arg(long)]
    pub trust_loopback: bool,
    /// Where the certificate, password hash and tokens live [default:
    /// $XDG_STATE_HOME/rtcam, or /var/lib/rtcam as root]
    #[arg(long, value_name = "DIR", global = true)]
    pub state_dir: Option<PathBuf>,
    /// The owner's certificate chain (PEM) instead of a generated one; needs --tls-key
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) for --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serial device bridged to viewers' `serial` data channels, or off;
    /// retried every 2 s while missing [default: the board's (e.g.
    /// /dev/serial0 on a Pi), if it exists at start]
    #[arg(long, value_name = "PATH|off")]
    pub serial: Option<String>,
    /// The serial port's speed [default: 115200]
    #[arg(long, value_name = "N")]
    pub serial_baud: Option<u32>,
    /// The microphone viewers hear: auto (the first capture device that is
    /// not HDMI, else none), off, test (the audio stamp, paced like a
    /// microphone), or an ALSA PCM such as plughw:CARD=Device,DEV=0
    /// [default: the board's, else auto]
    #[arg(long, value_name = "auto|off|test|PCM")]
    pub audio_in: Option<AudioIn>,
    /// Where a talking viewer is played: auto (the first playback device
    /// that is not HDMI, else none), off, or an ALSA PCM [default: the
    /// board's, else auto]
    #[arg(long, value_name = "auto|off|PCM")]
    pub audio_out: Option<AudioOut>,
    /// The microphone's Opus bitrate in kbit/s [default: 32]
    #[arg(long, value_name = "KBPS")]
    pub audio_bitrate: Option<u32>,
    /// How the speaker's sound is kept out of the microphone's stream:
    /// cancel (an echo canceller, WebRTC's AEC3), half-duplex (the
    /// microphone is muted while a viewer talks), off, or auto (half-duplex
    /// with both devices) [default: the board's, else auto]
    #[arg(long, value_name = "auto|cancel|half-duplex|off")]
    pub echo: Option<EchoMode>,
    /// The largest UDP datagram rtcam sends, in bytes (RTP, RTCP, DTLS and
    /// data channels); 1150 fits inside WireGuard and Tailscale [default:
    /// 1150]
    #[arg(long, value_name = "BYTES")]
    pub mtu: Option<u32>,
    /// Publish the camera by WHIP to this endpoint (an SFU: Janus, LiveKit,
    /// MediaMTX, Cloudflare...), besides serving the page; may be given
    /// more than once
    #[arg(long, value_name = "URL")]
    pub whip: Vec<String>,
    /// A file (mode 600) whose first line is the bearer token for --whip
    #[arg(long, value_name = "FILE")]
    pub whip_token_file: Option<PathBuf>,
    /// The one video codec sent to WHIP targets (an SFU does not transcode)
    /// [default: h264]
    #[arg(long, value_name = "h264|vp8")]
    pub whip_codec: Option<String>,
    /// A keyframe at least this often while publishing (Amazon IVS wants
    /// 1-2 s) [default: only when asked]
    #[arg(long, value_name = "SECONDS")]
    pub whip_keyframe_interval: Option<f64>,
    /// Send our ICE candidates to WHIP targets in a PATCH after the offer
    /// instead of in it (several receivers drop or refuse PATCH)
    #[arg(long)]
    pub whip_trickle: bool,
    /// Announce this rtcam on the LAN by mDNS (<hostname>.local,
    /// _rtcam._tcp, _https._tcp; LAN addresses only) and list the other
    /// rtcams found [default: on]
    #[arg(long, value_name = "on|off")]
    pub mdns: Option<OnOff>,
    #[command(flatten)]
    pub record: record::RecordFlags,
}

/// A switch as flags and the file write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnOff {
    On,
    Off,
}

impl std::str::FromStr for OnOff {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "on" | "true" => Ok(OnOff::On),
            "off" | "false" => Ok(OnOff::Off),
            other => Err(format!("'{other}': expected on or off")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Set the password for the page (asked twice on the terminal)
    Passwd {
        /// Read the new password from the first line of standard input
        #[arg(long)]
        password_stdin: bool,
    },
    /// Manage WHEP bearer tokens
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Show the board profile this machine gets
    Board {
        /// Print only the profile's memory ceiling (for systemd's
        /// MemoryMax=; nothing when it has none)
        #[arg(long)]
        memory_max: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum TokenAction {
    /// Create a token and print it (the only time it is shown)
    Create {
        name: String,
        /// Its players may change the camera's settings (brightness,
        /// exposure, ...); without it they may only watch
        #[arg(long)]
        control: bool,
    },
    /// Revoke a token; players using it are refused from then on
    Revoke { name: String },
    /// List token names
    List,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

impl std::str::FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("size '{s}' is not WIDTHxHEIGHT, e.g. 1280x720");
        let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
        let width: u32 = w.trim().parse().map_err(|_| bad())?;
        let height: u32 = h.trim().parse().map_err(|_| bad())?;
        if !(16..=3840).contains(&width) || !(16..=2160).contains(&height) {
            return Err(format!(
                "size {width}x{height} is outside 16x16 .. 3840x2160"
            ));
        }
        if !width.is_multiple_of(2) || !height.is_multiple_of(2) {
            return Err(format!(
                "size {width}x{height} must have even width and height"
            ));
        }
        Ok(Size { width, height })
    }
}
