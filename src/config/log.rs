//! `[log]`: where log lines go, at what level, with what time stamps.

use super::one_of;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// `[log]`: what `main` gives env_logger (the library itself logs through
/// the `log` facade and never reads this).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Level of roost's own lines; other libraries log at `warn` and above.
    /// `RUST_LOG`, when set, replaces the whole filter.
    pub level: LogLevel,
    /// Empty: standard error. Else a file the lines are appended to.
    pub file: PathBuf,
    /// Precision of each line's UTC time stamp (RFC 3339), or none.
    pub timestamps: Timestamps,
}

impl LogConfig {
    pub fn file(&self) -> Option<&Path> {
        (!self.file.as_os_str().is_empty()).then_some(self.file.as_path())
    }
}

/// `log.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

impl TryFrom<String> for LogLevel {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        use LogLevel::*;
        [Error, Warn, Info, Debug, Trace]
            .into_iter()
            .find(|l| l.as_str() == s.to_ascii_lowercase())
            .ok_or_else(|| one_of(&s, &["error", "warn", "info", "debug", "trace"]))
    }
}

/// `log.timestamps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Timestamps {
    Off,
    Seconds,
    Millis,
    Micros,
    Nanos,
}

impl TryFrom<String> for Timestamps {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "off" => Timestamps::Off,
            "seconds" => Timestamps::Seconds,
            "millis" => Timestamps::Millis,
            "micros" => Timestamps::Micros,
            "nanos" => Timestamps::Nanos,
            _ => return Err(one_of(&s, &["seconds", "millis", "micros", "nanos", "off"])),
        })
    }
}
