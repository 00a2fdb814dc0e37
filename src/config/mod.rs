//! Flags + TOML file -> one validated [`Config`].
//!
//! Every flag can also be set in the file given by `--config`, under the
//! same name (`max-viewers = 4`); a flag on the command line wins over the
//! file. Anything invalid is refused at start with a one-line error naming
//! the problem (exit status 2), never discovered later at run time.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;

mod audio;
mod cli;
pub mod record;
pub mod whip;

pub use cli::{Cli, Command, OnOff, Size, TokenAction};

use crate::audio::{AudioConfig, AudioIn, AudioOut, EchoMode};
use thiserror::Error;

use crate::board::{self, Board};
use crate::capture::{CaptureFormat, SourceSpec};
use crate::encode::{EncoderSettings, H264Choice};

pub const DEFAULT_HTTP: &str = "0.0.0.0:8443";
pub const DEFAULT_RTC: &str = "0.0.0.0:8443";
const DEFAULT_SIZE: Size = Size {
    width: 1280,
    height: 720,
};
const DEFAULT_FPS: u32 = 30;
const DEFAULT_MAX_VIEWERS: usize = 16;

/// The file form: the same names as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    board: Option<String>,
    http: Option<SocketAddr>,
    rtc: Option<SocketAddr>,
    advertise: Option<Vec<IpAddr>>,
    source: Option<String>,
    capture_format: Option<String>,
    size: Option<String>,
    fps: Option<u32>,
    bitrate: Option<u32>,
    encoder: Option<String>,
    vp8_size: Option<String>,
    max_viewers: Option<usize>,
    max_viewers_per_address: Option<usize>,
    trust_loopback: Option<bool>,
    state_dir: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    serial: Option<String>,
    serial_baud: Option<u32>,
    audio_in: Option<String>,
    audio_out: Option<String>,
    audio_bitrate: Option<u32>,
    echo: Option<String>,
    mtu: Option<u32>,
    whip: Option<Vec<String>>,
    whip_token_file: Option<PathBuf>,
    whip_codec: Option<String>,
    whip_keyframe_interval: Option<f64>,
    whip_trickle: Option<bool>,
    mdns: Option<bool>,
    record: Option<String>,
    record_dir: Option<PathBuf>,
    record_pre: Option<f64>,
    record_post: Option<f64>,
    record_segment: Option<f64>,
    record_max_size: Option<String>,
    record_max_age: Option<String>,
    record_min_free: Option<String>,
    record_endurance_tbw: Option<f64>,
    motion: Option<bool>,
    on_event: Option<String>,
}

impl FileConfig {
    fn record(&mut self) -> record::RecordFile {
        record::RecordFile {
            record: self.record.take(),
            record_dir: self.record_dir.take(),
            record_pre: self.record_pre,
            record_post: self.record_post,
            record_segment: self.record_segment,
            record_max_size: self.record_max_size.take(),
            record_max_age: self.record_max_age.take(),
            record_min_free: self.record_min_free.take(),
            record_endurance_tbw: self.record_endurance_tbw,
            motion: self.motion,
            on_event: self.on_event.take(),
        }
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("config file {0}: {1}")]
    Parse(PathBuf, String),
    #[error("{0}")]
    Invalid(String),
}

/// Everything the appliance runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub board: Board,
    /// Why the board was chosen, for the log.
    pub board_note: String,
    pub http: SocketAddr,
    pub rtc: SocketAddr,
    pub advertise: Vec<IpAddr>,
    pub source: SourceSpec,
    pub capture_format: CaptureFormat,
    pub size: Size,
    pub fps: u32,
    pub bitrate_kbps: u32,
    pub encoder: H264Choice,
    /// The largest VP8 picture (the capture's size when smaller).
    pub vp8_size: Size,
    pub max_viewers: usize,
    pub max_viewers_per_address: usize,
    pub trust_loopback: bool,
    pub state_dir: PathBuf,
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The serial bridge, if on.
    pub serial: Option<SerialConfig>,
    pub audio: AudioConfig,
    /// The largest datagram sent (`--mtu`).
    pub mtu: u32,
    /// Where the camera is published by WHIP.
    pub whip: Vec<whip::WhipTarget>,
    /// Announce on the LAN and browse for the other rtcams.
    pub mdns: bool,
    /// Motion detection and recording.
    pub record: crate::record::RecordConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialConfig {
    pub path: PathBuf,
    pub baud: u32,
}

/// The serial bridge: a flag or the file names a device (kept on while it
/// is missing: it may be plugged in later), or `off`; else the board's
/// port if it exists now.
fn serial_config(
    flag: Option<String>,
    file: Option<String>,
    board: Option<&str>,
    baud: Option<u32>,
) -> Result<Option<SerialConfig>, ConfigError> {
    let baud = within("serial-baud", baud.unwrap_or(115_200), 50..=4_000_000)?;
    let path = match flag.or(file) {
        Some(p) if p == "off" => return Ok(None),
        Some(p) => PathBuf::from(p),
        None => match board.map(PathBuf::from) {
            Some(p) if p.exists() => p,
            _ => return Ok(None),
        },
    };
    Ok(Some(SerialConfig { path, baud }))
}

/// A flag over the file's (or the board's) value over the type's default.
fn layered<T>(flag: Option<T>, file: Option<String>) -> Result<T, ConfigError>
where
    T: std::str::FromStr<Err = String> + Default,
{
    layered_or(flag, file, T::default())
}

/// A flag over the file's (or the board's) value over `default`.
fn layered_or<T>(flag: Option<T>, file: Option<String>, default: T) -> Result<T, ConfigError>
where
    T: std::str::FromStr<Err = String>,
{
    match (flag, file) {
        (Some(v), _) => Ok(v),
        (None, Some(s)) => s.parse().map_err(ConfigError::Invalid),
        (None, None) => Ok(default),
    }
}

/// `value`, when `range` holds it.
fn within<T>(name: &str, value: T, range: std::ops::RangeInclusive<T>) -> Result<T, ConfigError>
where
    T: PartialOrd + std::fmt::Display,
{
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::Invalid(format!(
            "{name} {value} is outside {}..{}",
            range.start(),
            range.end()
        )))
    }
}

/// The board profile: named, or detected from the device tree model (and
/// how it was found, for the log).
fn board_of(cli: &Cli, file: &FileConfig) -> Result<(Board, String), ConfigError> {
    match cli.board.clone().or(file.board.clone()).as_deref() {
        None | Some("auto") => {
            let model = board::read_model();
            let (b, warning) = board::detect(model.as_deref(), std::env::consts::ARCH);
            let note = warning.unwrap_or_else(|| match &model {
                Some(m) => format!("detected from '{m}'"),
                None => "detected from the CPU architecture".into(),
            });
            Ok((b, note))
        }
        Some(name) => Ok((
            board::by_name(name).map_err(ConfigError::Invalid)?,
            "chosen by name".into(),
        )),
    }
}

impl Config {
    /// Just the state dir, for the `passwd` and `token` commands.
    pub fn state_dir_of(cli: &Cli) -> Result<PathBuf, ConfigError> {
        let file = read_file(cli)?;
        Ok(cli
            .state_dir
            .clone()
            .or(file.state_dir)
            .unwrap_or_else(default_state_dir))
    }

    pub fn from_cli(mut cli: Cli) -> Result<Config, ConfigError> {
        let mut file = read_file(&cli)?;
        let record_file = file.record();
        let record_flags = std::mem::take(&mut cli.record);
        let (board, board_note) = board_of(&cli, &file)?;
        // Flags win over the file, the file over the board profile.
        let picture = Picture::of(&cli, &file, &board)?;
        let (max_viewers, max_viewers_per_address) = viewer_limits(&cli, &file, &board)?;
        let (http, rtc, advertise) = addresses(&cli, &file)?;
        let tls = match (cli.tls_cert.or(file.tls_cert), cli.tls_key.or(file.tls_key)) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err(invalid("tls-cert and tls-key go together".into())),
        };
        let serial = serial_config(
            cli.serial,
            file.serial,
            board.serial_port.as_deref(),
            cli.serial_baud.or(file.serial_baud),
        )?;
        let audio = audio::audio_config(
            audio::AudioFlags {
                input: cli.audio_in,
                output: cli.audio_out,
                bitrate: cli.audio_bitrate,
                echo: cli.echo,
            },
            audio::AudioFile {
                input: file.audio_in,
                output: file.audio_out,
                bitrate: file.audio_bitrate,
                echo: file.echo,
            },
            &board,
        )?;
        Ok(Config {
            board,
            board_note,
            http,
            rtc,
            advertise,
            source: picture.source,
            capture_format: picture.capture_format,
            size: picture.size,
            fps: picture.fps,
            bitrate_kbps: picture.bitrate_kbps,
            encoder: picture.encoder,
            vp8_size: picture.vp8_size,
            max_viewers,
            max_viewers_per_address,
            trust_loopback: cli.trust_loopback || file.trust_loopback.unwrap_or(false),
            record: record::record_config(
                record_flags,
                record_file,
                &cli.state_dir
                    .clone()
                    .or(file.state_dir.clone())
                    .unwrap_or_else(default_state_dir),
            )?,
            state_dir: cli
                .state_dir
                .or(file.state_dir)
                .unwrap_or_else(default_state_dir),
            tls,
            serial,
            audio,
            mtu: within(
                "mtu",
                cli.mtu.or(file.mtu).unwrap_or(crate::rtc::DEFAULT_MTU),
                crate::rtc::MTU_RANGE,
            )?,
            whip: whip::whip_targets(whip::WhipSettings {
                urls: if cli.whip.is_empty() {
                    file.whip.unwrap_or_default()
                } else {
                    cli.whip
                },
                token_file: cli.whip_token_file.or(file.whip_token_file),
                codec: cli.whip_codec.or(file.whip_codec),
                keyframe_interval: cli.whip_keyframe_interval.or(file.whip_keyframe_interval),
                trickle: cli.whip_trickle || file.whip_trickle.unwrap_or(false),
            })?,
            mdns: match cli.mdns {
                Some(v) => v == OnOff::On,
                None => file.mdns.unwrap_or(true),
            },
        })
    }
}

fn invalid(message: String) -> ConfigError {
    ConfigError::Invalid(message)
}

/// What is captured and how it is encoded.
struct Picture {
    source: SourceSpec,
    capture_format: CaptureFormat,
    size: Size,
    fps: u32,
    bitrate_kbps: u32,
    encoder: H264Choice,
    vp8_size: Size,
}

impl Picture {
    fn of(cli: &Cli, file: &FileConfig, board: &Board) -> Result<Picture, ConfigError> {
        let source = layered(
            cli.source.clone(),
            file.source.clone().or(board.source.clone()),
        )?;
        let capture_format = layered(cli.capture_format, file.capture_format.clone())?;
        let size = layered_or(
            cli.size,
            file.size.clone().or(board.size.clone()),
            DEFAULT_SIZE,
        )?;
        let fps = within(
            "fps",
            cli.fps.or(file.fps).or(board.fps).unwrap_or(DEFAULT_FPS),
            1..=120,
        )?;
        // The board's bitrate was chosen for the board's size and rate:
        // it applies only while those do.
        let board_picture =
            cli.size.is_none() && file.size.is_none() && cli.fps.is_none() && file.fps.is_none();
        let bitrate_kbps = cli
            .bitrate
            .or(file.bitrate)
            .or(board.bitrate.filter(|_| board_picture))
            .unwrap_or_else(|| EncoderSettings::default_bitrate_kbps(size.width, size.height, fps));
        if !(50..=50_000).contains(&bitrate_kbps) {
            return Err(invalid(format!(
                "bitrate {bitrate_kbps} kbit/s is outside 50..50000"
            )));
        }
        let encoder = layered(cli.encoder.clone(), file.encoder.clone())?;
        let vp8_size = layered_or(
            cli.vp8_size,
            file.vp8_size.clone().or(board.vp8_size.clone()),
            size,
        )?;
        Ok(Picture {
            source,
            capture_format,
            size,
            fps,
            bitrate_kbps,
            encoder,
            vp8_size,
        })
    }
}

/// Most viewers, and most from one address.
fn viewer_limits(
    cli: &Cli,
    file: &FileConfig,
    board: &Board,
) -> Result<(usize, usize), ConfigError> {
    let max_viewers = cli
        .max_viewers
        .or(file.max_viewers)
        .or(board.max_viewers)
        .unwrap_or(DEFAULT_MAX_VIEWERS);
    let per_address = cli
        .max_viewers_per_address
        .or(file.max_viewers_per_address)
        .unwrap_or(4);
    Ok((
        within("max-viewers", max_viewers, 1..=256)?,
        within("max-viewers-per-address", per_address, 1..=256)?,
    ))
}

/// Where HTTPS and media listen, and what ICE candidates say.
fn addresses(
    cli: &Cli,
    file: &FileConfig,
) -> Result<(SocketAddr, SocketAddr, Vec<IpAddr>), ConfigError> {
    let http = cli
        .http
        .or(file.http)
        .unwrap_or_else(|| DEFAULT_HTTP.parse().expect("valid default"));
    let rtc = cli
        .rtc
        .or(file.rtc)
        .unwrap_or_else(|| DEFAULT_RTC.parse().expect("valid default"));
    let advertise = cli
        .advertise
        .clone()
        .or(file.advertise.clone())
        .unwrap_or_default();
    if advertise.iter().any(|ip| ip.is_unspecified()) {
        return Err(invalid(
            "advertise needs real addresses, not 0.0.0.0 or ::".into(),
        ));
    }
    Ok((http, rtc, advertise))
}

fn read_file(cli: &Cli) -> Result<FileConfig, ConfigError> {
    match &cli.config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.clone(), e))?;
            parse_file(path, &text)
        }
        None => Ok(FileConfig::default()),
    }
}

/// Parses a config file's text (public for the fuzz target).
pub fn check_file_text(text: &str) -> Result<(), ConfigError> {
    parse_file(Path::new("config"), text).map(|_| ())
}

fn parse_file(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        // toml's messages span several lines; keep the first, which names the key.
        let msg = e.to_string();
        let first = msg
            .lines()
            .next()
            .unwrap_or("invalid TOML")
            .trim()
            .to_string();
        ConfigError::Parse(path.to_path_buf(), format!("{first} ({})", e.message()))
    })
}

/// `$XDG_STATE_HOME/rtcam`, else `/var/lib/rtcam` for root, else
/// `~/.local/state/rtcam`.
pub fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("STATE_DIRECTORY").filter(|d| !d.is_empty()) {
        // systemd's StateDirectory= sets this.
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("rtcam");
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/rtcam");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/state/rtcam"),
        None => PathBuf::from("/var/lib/rtcam"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("rtcam").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn defaults() {
        let c =
            Config::from_cli(cli(&["--state-dir", "/tmp/x", "--board", "generic-x86_64"])).unwrap();
        assert_eq!(c.http, "0.0.0.0:8443".parse().unwrap());
        assert_eq!(c.rtc, "0.0.0.0:8443".parse().unwrap());
        assert_eq!(c.source, SourceSpec::Auto);
        assert_eq!((c.size.width, c.size.height, c.fps), (1280, 720, 30));
        assert_eq!(c.bitrate_kbps, 1935);
        assert!(c.advertise.is_empty());
        assert_eq!(c.tls, None);
        assert!(!c.trust_loopback, "authentication for everyone by default");
        assert_eq!(c.max_viewers_per_address, 4);
        assert_eq!(c.mtu, 1150, "inside a VPN's MTU by default");
        assert!(c.mdns, "announced on the LAN by default");
        assert!(c.whip.is_empty());
        let off = Config::from_cli(cli(&["--mdns", "off", "--state-dir", "/tmp/x"])).unwrap();
        assert!(!off.mdns);
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = std::env::temp_dir().join(format!("rtcam-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("rtcam.toml");
        std::fs::write(
            &file,
            "fps = 15\nsize = \"640x480\"\nmax-viewers = 3\nadvertise = [\"127.0.0.1\"]\nsource = \"test\"\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let c = Config::from_cli(cli(&["--config", f, "--fps", "25", "--board", "pi-5"])).unwrap();
        assert_eq!(c.fps, 25);
        assert_eq!((c.size.width, c.size.height), (640, 480), "file over board");
        assert_eq!(
            c.bitrate_kbps, 537,
            "computed for the file's picture, not the board's"
        );
        assert_eq!(c.board.name, "pi-5");
        let p5 = Config::from_cli(cli(&["--board", "pi-5", "--state-dir", "/tmp/x"])).unwrap();
        assert_eq!(
            (p5.size.width, p5.size.height, p5.fps),
            (1920, 1080, 30),
            "board over built-in"
        );
        assert_eq!(p5.bitrate_kbps, 4000);
        assert_eq!(p5.board.encoder_threads, 2);
        assert_eq!(c.max_viewers, 3);
        assert_eq!(c.source, SourceSpec::Test);
        assert_eq!(c.advertise, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn bad_values_name_the_problem() {
        for (args, needle) in [
            (&["--fps", "0"][..], "fps"),
            (&["--bitrate", "1"][..], "bitrate"),
            (&["--max-viewers", "0"][..], "max-viewers"),
            (&["--mtu", "200"][..], "mtu 200 is outside 640..1500"),
            (&["--mtu", "9000"][..], "mtu"),
            (&["--advertise", "0.0.0.0"][..], "advertise"),
            (&["--board", "pi-9"][..], "unknown board"),
        ] {
            let err = Config::from_cli(cli(args)).unwrap_err().to_string();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
        assert!(Cli::try_parse_from(["rtcam", "--size", "big"]).is_err());
        assert!(Cli::try_parse_from(["rtcam", "--size", "641x480"]).is_err());
        assert!(Cli::try_parse_from(["rtcam", "--source", "webcam"]).is_err());
        assert!(Cli::try_parse_from(["rtcam", "--tls-cert", "a.pem"]).is_err());
        assert!(Cli::try_parse_from(["rtcam", "--http", "nowhere"]).is_err());
    }

    #[test]
    fn bad_file_names_the_key() {
        let p = Path::new("x.toml");
        let err = parse_file(p, "fsp = 3\n").unwrap_err().to_string();
        assert!(err.contains("fsp"), "{err}");
        let err = parse_file(p, "fps = \"fast\"\n").unwrap_err().to_string();
        assert!(err.contains("x.toml"), "{err}");
        assert!(parse_file(p, "fps = 30\nhttp = \"127.0.0.1:9000\"\n").is_ok());
    }

    #[test]
    fn the_serial_bridge_is_on_when_named_off_when_not_and_the_boards_only_if_present() {
        let on = Config::from_cli(cli(&["--serial", "/dev/ttyACM7", "--serial-baud", "9600"]));
        assert_eq!(
            on.unwrap().serial,
            Some(SerialConfig {
                path: "/dev/ttyACM7".into(),
                baud: 9600
            }),
            "named: on even while missing (it may be plugged in later)"
        );
        let off = Config::from_cli(cli(&["--serial", "off", "--board", "pi-4"])).unwrap();
        assert_eq!(off.serial, None);
        assert_eq!(
            serial_config(None, None, Some("/dev/serial-none"), None).unwrap(),
            None,
            "a board's port that is not there is off"
        );
        let here = serial_config(None, None, Some("/dev/null"), None).unwrap();
        assert_eq!(here.map(|s| s.baud), Some(115_200));
        assert!(Config::from_cli(cli(&["--serial-baud", "7"])).is_err());
    }
}

#[cfg(test)]
mod shipped_file {
    /// The commented default config parses, and so does every commented
    /// line in it once uncommented.
    #[test]
    fn the_default_config_file_is_valid() {
        let text = include_str!("../../etc/rtcam.toml");
        super::check_file_text(text).expect("as shipped");
        let uncommented: String = text
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .filter(|l| l.contains(" = ") && !l.starts_with(' '))
            .map(|l| format!("{l}\n"))
            .collect();
        super::check_file_text(&uncommented).expect("every setting uncommented");
        assert!(uncommented.lines().count() >= 14, "{uncommented}");
    }
}
