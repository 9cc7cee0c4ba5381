//! What the user gave us (a file, a flag value): errors in it exit with 2,
//! and reads whose errors name the file.
use std::path::Path;

/// An error in what the user gave us: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

impl InputError {
    pub fn is_input(&self) -> bool {
        true
    }
}

pub fn input_error(msg: impl Into<String>) -> anyhow::Error {
    InputError(msg.into()).into()
}

/// Reads a file the user named; a missing or unreadable file is an input error.
pub fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| input_error(format!("cannot read {}: {e}", path.display())))
}
