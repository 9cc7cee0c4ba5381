//! Where passphrases and passwords come from: a file, an environment
//! variable, or a prompt on the terminal; never a command-line argument.
use crate::{FilesError, Result};
use std::io::IsTerminal;
use std::path::Path;
use zeroize::Zeroizing;

pub type Secret = Zeroizing<String>;

/// Where to look for one secret, in this order.
pub struct SecretSource<'a> {
    /// Its first line is the secret.
    pub file: Option<&'a Path>,
    /// Used when set and not empty.
    pub env_var: &'a str,
    /// Asked on the terminal when stdin is one (twice with `confirm`).
    pub prompt: &'a str,
    pub confirm: bool,
    /// What the error says is missing, e.g. "CA passphrase (--passphrase-file)".
    pub how: &'a str,
}

/// The CA key passphrase (`--passphrase-file`, `$AMBOS_PASSPHRASE`, a prompt).
pub fn ca_passphrase(file: Option<&Path>, confirm: bool) -> Result<Secret> {
    resolve(&SecretSource {
        file,
        env_var: "AMBOS_PASSPHRASE",
        prompt: "CA key passphrase",
        confirm,
        how: "CA passphrase (--passphrase-file)",
    })
}

/// A new or existing PKCS#12 password (asked twice on a terminal).
pub fn p12_password(file: Option<&Path>) -> Result<Secret> {
    resolve(&SecretSource {
        file,
        env_var: "AMBOS_P12_PASSWORD",
        prompt: "PKCS#12 password",
        confirm: true,
        how: "PKCS#12 password (--p12-password-file / --password-file)",
    })
}

/// The passphrase of an encrypted private key the user gave (`--key-passphrase-file`,
/// `$AMBOS_KEY_PASSPHRASE`, a prompt).
pub fn key_passphrase(file: Option<&Path>) -> Result<Secret> {
    resolve(&SecretSource {
        file,
        env_var: "AMBOS_KEY_PASSPHRASE",
        prompt: "Private key passphrase",
        confirm: false,
        how: "private key passphrase (--key-passphrase-file)",
    })
}

/// The first line of `path`: an input error if unreadable, not UTF-8 or empty.
pub fn first_line(path: &Path, allow_empty: bool) -> Result<Secret> {
    let bytes = std::fs::read(path).map_err(|e| input(format!("cannot read {}: {e}", path.display())))?;
    let text = String::from_utf8(bytes).map_err(|_| input(format!("{} is not UTF-8 text", path.display())))?;
    let line = text.lines().next().unwrap_or("").to_string();
    if line.is_empty() && !allow_empty {
        return Err(input(format!("{} is empty", path.display())));
    }
    Ok(Zeroizing::new(line))
}

pub fn resolve(src: &SecretSource) -> Result<Secret> {
    if let Some(f) = src.file {
        return first_line(f, false);
    }
    if let Ok(v) = std::env::var(src.env_var) {
        if !v.is_empty() {
            return Ok(Zeroizing::new(v));
        }
    }
    if std::io::stdin().is_terminal() {
        let ask = |prompt: String| rpassword::prompt_password(prompt).map(Zeroizing::new).map_err(FilesError::Prompt);
        let first = ask(format!("{}: ", src.prompt))?;
        if first.is_empty() {
            return Err(input("empty passphrase"));
        }
        if src.confirm && *ask(format!("{} (again): ", src.prompt))? != *first {
            return Err(input("the two entries differ"));
        }
        return Ok(first);
    }
    let (how, var) = (src.how, src.env_var);
    Err(input(format!("no {how} given: use a file flag or set {var} (no terminal to prompt on)")))
}

fn input(msg: impl Into<String>) -> FilesError {
    FilesError::Input(msg.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_gives_its_first_line_and_bad_files_are_input_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        };
        let good = file("pass.txt", b"s3cret\nignored\n");
        assert_eq!(*first_line(&good, false).unwrap(), "s3cret");
        let src =
            SecretSource { file: Some(&good), env_var: "AMBOS_TEST_UNSET_VAR", prompt: "", confirm: true, how: "" };
        assert_eq!(*resolve(&src).unwrap(), "s3cret");
        for (path, why) in [
            (file("empty.txt", b"\n"), "is empty"),
            (file("bin.txt", &[0xff, 0xfe]), "is not UTF-8 text"),
            (dir.path().join("missing.txt"), "cannot read"),
        ] {
            let e = first_line(&path, false).unwrap_err();
            assert!(e.is_input() && e.to_string().contains(why), "{e}");
            assert!(e.to_string().contains(&path.display().to_string()), "names the file: {e}");
        }
        assert_eq!(*first_line(&dir.path().join("empty.txt"), true).unwrap(), "");
    }
}
