//! The terminal while `swarmctl top` runs live: raw mode (so `q` arrives
//! without Enter), the alternate screen (so the shell's screen comes back as
//! it was) and a hidden cursor, all undone when the [`Screen`] is dropped,
//! whichever way `top` ends.

use std::io::{self, Stdout, Write as _};

use crossterm::cursor::{Hide, MoveTo, Show};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::style::Print;
use crossterm::terminal::{
    self, Clear, ClearType, EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode,
    enable_raw_mode,
};
use crossterm::{execute, queue};

/// What a frame is drawn to when the terminal's size cannot be read.
const FALLBACK_SIZE: (usize, usize) = (80, 24);

pub struct Screen {
    out: Stdout,
}

impl Screen {
    pub fn enter() -> io::Result<Screen> {
        enable_raw_mode()?;
        // From here on, dropping the screen restores the terminal.
        let mut screen = Screen { out: io::stdout() };
        execute!(screen.out, EnterAlternateScreen, Hide)?;
        Ok(screen)
    }

    /// `(columns, rows)`. A terminal that does not say (a pty nobody sized
    /// answers 0 by 0) gets [`FALLBACK_SIZE`].
    pub fn size() -> (usize, usize) {
        match terminal::size() {
            Ok((w, h)) if w > 0 && h > 0 => (usize::from(w), usize::from(h)),
            _ => FALLBACK_SIZE,
        }
    }

    /// Draws `lines` from the top left over what was there, without clearing
    /// the screen first (which would flicker). The caller fits the lines to
    /// [`Screen::size`]: one more line would scroll.
    pub fn draw(&mut self, lines: &[String]) -> io::Result<()> {
        queue!(self.out, MoveTo(0, 0))?;
        for (i, line) in lines.iter().enumerate() {
            if i > 0 {
                // Raw mode: a line feed alone does not go back to column 0.
                queue!(self.out, Print("\r\n"))?;
            }
            queue!(self.out, Print(line), Clear(ClearType::UntilNewLine))?;
        }
        queue!(self.out, Clear(ClearType::FromCursorDown))?;
        self.out.flush()
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        // Nothing left to tell anyone if this fails: the terminal is going
        // back to the shell either way.
        let _ = execute!(self.out, Show, LeaveAlternateScreen);
        let _ = disable_raw_mode();
    }
}

/// `q`, Esc and Ctrl-C (which raw mode delivers as a key, not a signal).
pub fn is_quit(key: &KeyEvent) -> bool {
    if key.kind != KeyEventKind::Press {
        return false;
    }
    match key.code {
        KeyCode::Char('q' | 'Q') | KeyCode::Esc => true,
        KeyCode::Char('c' | 'd') => key.modifiers.contains(KeyModifiers::CONTROL),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quit_keys() {
        let key = |code, modifiers| KeyEvent::new(code, modifiers);
        assert!(is_quit(&key(KeyCode::Char('q'), KeyModifiers::NONE)));
        assert!(is_quit(&key(KeyCode::Esc, KeyModifiers::NONE)));
        assert!(is_quit(&key(KeyCode::Char('c'), KeyModifiers::CONTROL)));
        assert!(!is_quit(&key(KeyCode::Char('c'), KeyModifiers::NONE)));
        assert!(!is_quit(&key(KeyCode::Enter, KeyModifiers::NONE)));
    }
}
