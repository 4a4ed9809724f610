//! Exec requests and results.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::GoDuration;

/// How `command` is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExecMode {
    /// `/bin/sh -c COMMAND` with each arg shell-quoted and appended.
    #[default]
    Shell,
    /// `COMMAND` with `args` as literal arguments; never a shell.
    Argv,
}

impl ExecMode {
    /// The wire value: empty or `shell` is a shell, `argv` is argv.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "" | "shell" => Some(ExecMode::Shell),
            "argv" => Some(ExecMode::Argv),
            _ => None,
        }
    }
}

/// The exec body of `POST /sandboxes/{id}/exec` (and the WebSocket `start`
/// message).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct ExecRequest {
    /// The command (a shell script in `shell` mode, the program in `argv`);
    /// not blank, no NUL bytes.
    #[schema(min_length = 1, pattern = "^[^\\u0000]*\\S[^\\u0000]*$")]
    pub command: String,
    pub args: Vec<String>,
    /// Kept as a string so an unknown mode is a 400 naming it, not a JSON
    /// error.
    #[schema(pattern = "^(|shell|argv)$")]
    pub mode: String,
    pub env: BTreeMap<String, String>,
    /// Absolute path (default: the image's working directory).
    #[schema(pattern = "^(/|$)")]
    pub workdir: String,
    pub timeout: Option<GoDuration>,
    pub stream: bool,
}

impl ExecRequest {
    /// The argv that realises this request.
    pub fn argv(&self, mode: ExecMode) -> Vec<String> {
        match mode {
            ExecMode::Argv => std::iter::once(self.command.clone())
                .chain(self.args.iter().cloned())
                .collect(),
            ExecMode::Shell => {
                let mut script = self.command.clone();
                for a in &self.args {
                    script.push(' ');
                    script.push_str(&shell_quote(a));
                }
                vec!["/bin/sh".into(), "-c".into(), script]
            }
        }
    }
}

/// Quotes `s` for a POSIX shell: the result is one word with the literal
/// value of `s`.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StreamKind {
    Stdout,
    Stderr,
}

/// A piece of output, in the order the process produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    pub stream: StreamKind,
    pub data: Vec<u8>,
}

/// The result of a finished command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub duration: Duration,
    /// Output past the exec output limit was dropped from `stdout` or
    /// `stderr`.
    pub truncated: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_argv_for_each_mode() {
        let req = ExecRequest {
            command: "echo".into(),
            args: vec!["a b".into(), "$HOME".into(), "it's".into()],
            ..Default::default()
        };
        assert_eq!(
            req.argv(ExecMode::Argv),
            vec!["echo", "a b", "$HOME", "it's"]
        );
        assert_eq!(
            req.argv(ExecMode::Shell),
            vec!["/bin/sh", "-c", r#"echo 'a b' '$HOME' 'it'\''s'"#]
        );
    }

    #[test]
    fn parses_modes() {
        assert_eq!(ExecMode::parse(""), Some(ExecMode::Shell));
        assert_eq!(ExecMode::parse("argv"), Some(ExecMode::Argv));
        assert_eq!(ExecMode::parse("bash"), None);
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("plain-1.txt"), "plain-1.txt");
    }
}
