//! File I/O for the CLI: atomic writes (temp file + fsync + rename) so a
//! crash never leaves a half-written key or certificate, and reads whose
//! errors name the file.
use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};

/// An error in what the user gave us (a file, a flag value): exit code 2.
#[derive(Debug)]
pub struct InputError(pub String);

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

pub fn input_error(msg: impl Into<String>) -> anyhow::Error {
    InputError(msg.into()).into()
}

/// Reads a file the user named; a missing or unreadable file is an input error.
pub fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| input_error(format!("cannot read {}: {e}", path.display())))
}

/// Mode for private keys and keystores.
pub const PRIVATE: u32 = 0o600;
/// Mode for certificates and CRLs.
pub const PUBLIC: u32 = 0o644;

/// Writes `bytes` to `path` atomically with permissions `mode`.
/// `durable` adds fsyncs of the file and its directory.
/// `write_atomic`, except that a file already holding exactly `bytes` is
/// left alone: rewriting the CA certificate on every `issue` would replace
/// its inode and make a proxy that watches it reload for nothing.
pub fn write_atomic_if_changed(path: &Path, bytes: &[u8], mode: u32, durable: bool) -> anyhow::Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    write_atomic(path, bytes, mode, durable)
}

pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32, durable: bool) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path.file_name().with_context(|| format!("{} is not a file path", path.display()))?;
    let tmp = dir.join(format!(".{}.tmp-{}-{}", file_name.to_string_lossy(), std::process::id(), nanos()));
    let result = (|| -> std::io::Result<()> {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if durable {
            if let Ok(d) = std::fs::File::open(&dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// Creates an output directory (and parents) if needed.
pub fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create directory {}", dir.display()))
}
