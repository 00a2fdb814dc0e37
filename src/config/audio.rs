//! The sound's settings: flags over the file over the board's profile.

use super::{ConfigError, layered, within};
use crate::audio::{AudioConfig, AudioIn, AudioOut, DEFAULT_BITRATE_KBPS, EchoMode};
use crate::board::Board;

/// What the flags and the file say about sound.
#[derive(Debug, Default)]
pub struct AudioFlags {
    pub input: Option<AudioIn>,
    pub output: Option<AudioOut>,
    pub bitrate: Option<u32>,
    pub echo: Option<EchoMode>,
}

/// The file's sound keys (text, parsed like the flags).
#[derive(Debug, Default)]
pub struct AudioFile {
    pub input: Option<String>,
    pub output: Option<String>,
    pub bitrate: Option<u32>,
    pub echo: Option<String>,
}

pub fn audio_config(
    flags: AudioFlags,
    file: AudioFile,
    board: &Board,
) -> Result<AudioConfig, ConfigError> {
    let input = layered(flags.input, file.input.or(board.audio_in.clone()))?;
    let output = layered(flags.output, file.output.or(board.audio_out.clone()))?;
    let echo = layered(flags.echo, file.echo.or(board.echo.clone()))?;
    let bitrate_kbps = within(
        "audio-bitrate",
        flags
            .bitrate
            .or(file.bitrate)
            .unwrap_or(DEFAULT_BITRATE_KBPS),
        6..=128,
    )?;
    Ok(AudioConfig {
        input,
        output,
        bitrate_kbps,
        echo,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_the_file_over_the_board() {
        let mut board = crate::board::by_name("pi-zero-2w").unwrap();
        board.audio_in = Some("plughw:CARD=Board,DEV=0".into());
        board.echo = Some("half-duplex".into());
        let c = audio_config(AudioFlags::default(), AudioFile::default(), &board).unwrap();
        assert_eq!(c.input, AudioIn::Pcm("plughw:CARD=Board,DEV=0".into()));
        assert_eq!(c.echo, EchoMode::HalfDuplex);
        assert_eq!(c.output, AudioOut::Auto);
        let file = AudioFile {
            input: Some("test".into()),
            echo: Some("off".into()),
            bitrate: Some(24),
            ..Default::default()
        };
        let flags = AudioFlags {
            input: Some(AudioIn::Off),
            ..Default::default()
        };
        let c = audio_config(flags, file, &board).unwrap();
        assert_eq!(c.input, AudioIn::Off);
        assert_eq!(c.echo, EchoMode::Off);
        assert_eq!(c.bitrate_kbps, 24);
        let loud = AudioFlags {
            bitrate: Some(500),
            ..Default::default()
        };
        assert!(audio_config(loud, AudioFile::default(), &board).is_err());
    }
}
