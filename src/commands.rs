//! `rtcam passwd`, `rtcam token ...` and `rtcam board`: the owner's tools
//! for the state dir and the board. They print secrets only to the terminal that asked, never to a log.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, bail};

use crate::auth::{PasswordFile, TokenStore, password};
use crate::config::{Command, TokenAction};

pub fn run(command: Command, state_dir: &Path) -> anyhow::Result<()> {
    match command {
        Command::Passwd { password_stdin } => passwd(state_dir, password_stdin),
        Command::Token { action } => token(state_dir, action),
        Command::Board { memory_max } => {
            print!("{}", board_report(memory_max));
            Ok(())
        }
    }
}

/// The detected board profile, or with `memory_max` only its ceiling (the
/// package's postinst puts it into a systemd drop-in as `MemoryMax=`).
fn board_report(memory_max: bool) -> String {
    let model = crate::board::read_model();
    let (board, warning) = crate::board::detect(model.as_deref(), std::env::consts::ARCH);
    if memory_max {
        return board
            .memory_max
            .map(|m| format!("{m}\n"))
            .unwrap_or_default();
    }
    format!(
        "{} ({}){}\nmemory ceiling: {}\n",
        board.name,
        board.description,
        warning.map(|w| format!("; {w}")).unwrap_or_default(),
        board.memory_max.as_deref().unwrap_or("none")
    )
}

fn passwd(state_dir: &Path, from_stdin: bool) -> anyhow::Result<()> {
    let new = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        if !std::io::stdin().is_terminal() {
            bail!("standard input is not a terminal: use --password-stdin to pipe the password");
        }
        let first = prompt_hidden("New password: ")?;
        let second = prompt_hidden("Again: ")?;
        if first != second {
            bail!("the two passwords differ; nothing changed");
        }
        first
    };
    if new.chars().count() < password::MIN_LEN {
        bail!(
            "the password must be at least {} characters; nothing changed",
            password::MIN_LEN
        );
    }
    PasswordFile::set(state_dir, &new)?;
    eprintln!(
        "password changed for {} (a running rtcam uses it from the next login)",
        state_dir.display()
    );
    Ok(())
}

fn token(state_dir: &Path, action: TokenAction) -> anyhow::Result<()> {
    let mut store = TokenStore::open(state_dir);
    match action {
        TokenAction::Create { name, control } => {
            let token = store.create(&name, control)?;
            eprintln!("token '{name}' created; it is shown only now. Players send it as");
            eprintln!("  Authorization: Bearer <token>");
            println!("{token}");
        }
        TokenAction::Revoke { name } => {
            store.revoke(&name)?;
            eprintln!("token '{name}' revoked");
        }
        TokenAction::List => {
            for (name, control) in store.list()? {
                match control {
                    true => println!("{name}\tcontrol"),
                    false => println!("{name}\twatch"),
                }
            }
        }
    }
    Ok(())
}

/// Reads a line from the terminal with echo off.
fn prompt_hidden(prompt: &str) -> anyhow::Result<String> {
    eprint!("{prompt}");
    std::io::stderr().flush().ok();
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data; tcgetattr fills it for a valid fd.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    let have_tty = unsafe { libc::tcgetattr(fd, &mut saved) } == 0;
    if have_tty {
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: sets attributes from a termios we got from tcgetattr.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if have_tty {
        // SAFETY: restores the attributes saved above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    }
    eprintln!();
    read.context("reading the password")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
