//! Reading text files: UTF-8, or an error that names the first invalid byte's line and column.

use std::path::Path;

/// Where a file stops being UTF-8: 1-based line and column (the column counts characters, as
/// every other location of the loaders does), and the offending byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utf8Place {
    pub line: u32,
    pub col: u32,
    pub byte: u8,
}

impl std::fmt::Display for Utf8Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the file is not valid UTF-8: byte 0x{:02X} at line {}, column {} starts no valid character (save the file as UTF-8)",
            self.byte, self.line, self.col
        )
    }
}

#[derive(Debug)]
pub enum ReadError {
    Io(std::io::Error),
    Utf8(Utf8Place),
}

/// Reads `path` as UTF-8 text.
pub fn read_utf8(path: &Path) -> Result<String, ReadError> {
    let bytes = std::fs::read(path).map_err(ReadError::Io)?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        ReadError::Utf8(utf8_place(e.as_bytes(), at))
    })
}

/// The place of byte `at` of `bytes`, whose first `at` bytes are valid UTF-8.
pub fn utf8_place(bytes: &[u8], at: usize) -> Utf8Place {
    let valid = &bytes[..at];
    let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
    let col = std::str::from_utf8(&valid[line_start..])
        .map_or(at - line_start, |s| s.chars().count())
        + 1;
    Utf8Place {
        line: u32::try_from(line).unwrap_or(u32::MAX),
        col: u32::try_from(col).unwrap_or(u32::MAX),
        byte: bytes.get(at).copied().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(bytes: &[u8]) -> Utf8Place {
        let at = std::str::from_utf8(bytes).unwrap_err().valid_up_to();
        utf8_place(bytes, at)
    }

    #[test]
    fn the_first_bad_byte_is_located_in_characters() {
        assert_eq!(
            place(b"\xff"),
            Utf8Place {
                line: 1,
                col: 1,
                byte: 0xFF
            }
        );
        // Line 3; "é" before the bad byte is one character (two bytes).
        let p = place(b"name: a\nsteps:\n  - \xC3\xA9: \xC3\x28");
        assert_eq!((p.line, p.col, p.byte), (3, 8, 0xC3));
        assert!(p.to_string().contains("line 3, column 8"), "{p}");
    }
}
