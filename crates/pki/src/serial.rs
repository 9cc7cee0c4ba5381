use crate::PkiError;
use std::fmt;
use std::str::FromStr;

/// A certificate serial number. Canonical form: lowercase hex without leading
/// zero bytes, so it compares equal to what `openssl x509 -serial` prints.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial(Vec<u8>);

impl Serial {
    /// 16 random bytes with the top bit cleared (positive INTEGER) and the
    /// next one set (no leading zero byte): 126 bits of CSPRNG entropy.
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        aws_lc_rs::rand::fill(&mut bytes).expect("system RNG failed");
        bytes[0] = (bytes[0] & 0x7f) | 0x40;
        Serial(bytes.to_vec())
    }

    pub fn from_bytes(bytes: &[u8]) -> Self {
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len().saturating_sub(1));
        Serial(bytes[start..].to_vec())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl FromStr for Serial {
    type Err = PkiError;

    /// Accepts hex in any case, with or without colons and a `0x` prefix.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || PkiError::InvalidSerial(s.to_string());
        let t = s.trim();
        let t = t.strip_prefix("0x").unwrap_or(t);
        let mut digits: String = t.chars().filter(|c| *c != ':').collect();
        if digits.is_empty() || digits.len() > 42 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad());
        }
        if digits.len() % 2 == 1 {
            digits.insert(0, '0');
        }
        let bytes = hex::decode(digits).map_err(|_| bad())?;
        Ok(Serial::from_bytes(&bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_openssl_and_colon_forms() {
        let a: Serial = "4A:0B:FF".parse().unwrap();
        let b: Serial = "4a0bff".parse().unwrap();
        let c: Serial = "004A0BFF".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert_eq!(a.to_hex(), "4a0bff");
        assert!("xyz".parse::<Serial>().is_err());
        assert!("".parse::<Serial>().is_err());
    }

    #[test]
    fn random_serials_are_positive_sixteen_bytes() {
        let s = Serial::random();
        assert_eq!(s.as_bytes().len(), 16);
        assert!(s.as_bytes()[0] & 0x80 == 0 && s.as_bytes()[0] != 0);
        assert_ne!(s, Serial::random());
    }
}
