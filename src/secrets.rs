//! Secret files (access tokens, the relay's admin token): one rule for both programs.
//!
//! A token file holds the token on its first line. A UTF-8 byte-order mark (which Windows
//! editors write) and whitespace around the token (a trailing newline, a `\r` from CRLF) are
//! not part of it. An empty first line is an error, never "no token": a private relay started
//! with an empty token file must not run open, and a bridge must not send an empty bearer.

use std::fmt;
use std::path::{Path, PathBuf};

/// A token file that cannot be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum TokenFileError {
    /// The file cannot be read (or is not UTF-8).
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file's first line holds no token.
    Empty {
        /// The file.
        path: PathBuf,
    },
}

impl fmt::Display for TokenFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreadable { path, source } => {
                write!(f, "cannot read the token file {}: {source}", path.display())
            }
            Self::Empty { path } => write!(
                f,
                "the token file {} is empty (the token goes on its first line)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for TokenFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unreadable { source, .. } => Some(source),
            Self::Empty { .. } => None,
        }
    }
}

/// The token in a token file's text: its first line without a byte-order mark and surrounding
/// whitespace; `None` when that leaves nothing.
pub fn token_in(text: &str) -> Option<&str> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let token = text.lines().next()?.trim();
    (!token.is_empty()).then_some(token)
}

/// Reads the token file at `path` (see the module docs for the rule).
pub fn read_token_file(path: &Path) -> Result<String, TokenFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    token_in(&text)
        .map(str::to_owned)
        .ok_or_else(|| TokenFileError::Empty {
            path: path.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_without_bom_or_whitespace_is_the_token() {
        assert_eq!(token_in("secret\n"), Some("secret"));
        assert_eq!(token_in("\u{feff}secret\r\nsecond line"), Some("secret"));
        assert_eq!(token_in("  secret  "), Some("secret"));
        assert_eq!(token_in(""), None);
        assert_eq!(token_in("\u{feff}"), None);
        assert_eq!(
            token_in("   \nsecret"),
            None,
            "the token is on the first line"
        );
    }

    #[test]
    fn an_empty_or_missing_file_is_an_error() {
        let dir = std::env::temp_dir().join(format!("mcp-chat-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty");
        std::fs::write(&empty, "\u{feff}\n").unwrap();
        assert!(matches!(
            read_token_file(&empty),
            Err(TokenFileError::Empty { .. })
        ));
        assert!(matches!(
            read_token_file(&dir.join("missing")),
            Err(TokenFileError::Unreadable { .. })
        ));
        let good = dir.join("good");
        std::fs::write(&good, "\u{feff} tok \n").unwrap();
        assert_eq!(read_token_file(&good).unwrap(), "tok");
    }
}
