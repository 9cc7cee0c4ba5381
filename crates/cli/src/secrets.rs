//! Where passphrases and passwords come from: a file, an environment
//! variable, or a prompt on the terminal; never a command-line argument.
use crate::input::{input_error, read_input};
use crate::Global;
use std::io::IsTerminal;
use std::path::Path;
use zeroize::Zeroizing;

pub type Secret = Zeroizing<String>;

fn from_file(path: &Path) -> anyhow::Result<Secret> {
    let bytes = read_input(path)?;
    let text = String::from_utf8(bytes).map_err(|_| input_error(format!("{} is not UTF-8 text", path.display())))?;
    let line = text.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        return Err(input_error(format!("{} is empty", path.display())));
    }
    Ok(Zeroizing::new(line))
}

/// Resolves a secret: `file`, else `env_var`, else a prompt when stdin is a
/// terminal (asked twice when `confirm`), else an input error naming the options.
pub fn resolve(file: Option<&Path>, env_var: &str, prompt: &str, confirm: bool, how: &str) -> anyhow::Result<Secret> {
    if let Some(f) = file {
        return from_file(f);
    }
    if let Ok(v) = std::env::var(env_var) {
        if !v.is_empty() {
            return Ok(Zeroizing::new(v));
        }
    }
    if std::io::stdin().is_terminal() {
        let first = Zeroizing::new(rpassword::prompt_password(format!("{prompt}: "))?);
        if first.is_empty() {
            return Err(input_error("empty passphrase"));
        }
        if confirm {
            let again = Zeroizing::new(rpassword::prompt_password(format!("{prompt} (again): "))?);
            if *again != *first {
                return Err(input_error("the two entries differ"));
            }
        }
        return Ok(first);
    }
    Err(input_error(format!("no {how} given: use a file flag or set {env_var} (no terminal to prompt on)")))
}

pub fn ca_passphrase(g: &Global, confirm: bool) -> anyhow::Result<Secret> {
    resolve(
        g.passphrase_file.as_deref(),
        "AMBOS_PASSPHRASE",
        "CA key passphrase",
        confirm,
        "CA passphrase (--passphrase-file)",
    )
}

pub fn p12_password(file: Option<&Path>) -> anyhow::Result<Secret> {
    resolve(
        file,
        "AMBOS_P12_PASSWORD",
        "PKCS#12 password",
        true,
        "PKCS#12 password (--p12-password-file / --password-file)",
    )
}
