use crate::PkiError;
use pkcs8::der::Decode;
use pkcs8::{EncryptedPrivateKeyInfo, LineEnding, PrivateKeyInfo};
use rcgen::{KeyPair, RsaKeySize, SignatureAlgorithm};
use std::fmt;
use std::str::FromStr;
use zeroize::Zeroizing;

/// Key algorithms ambos can generate. ECDSA P-256 is the default: fast, small,
/// and accepted by every TLS stack we test against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum KeyType {
    #[default]
    EcP256,
    EcP384,
    Ed25519,
    Rsa2048,
    Rsa3072,
    Rsa4096,
}

impl KeyType {
    pub const ALL: [KeyType; 6] =
        [KeyType::EcP256, KeyType::EcP384, KeyType::Ed25519, KeyType::Rsa2048, KeyType::Rsa3072, KeyType::Rsa4096];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::EcP256 => "ec-p256",
            KeyType::EcP384 => "ec-p384",
            KeyType::Ed25519 => "ed25519",
            KeyType::Rsa2048 => "rsa-2048",
            KeyType::Rsa3072 => "rsa-3072",
            KeyType::Rsa4096 => "rsa-4096",
        }
    }

    pub(crate) fn algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            KeyType::EcP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyType::EcP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyType::Ed25519 => &rcgen::PKCS_ED25519,
            KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096 => &rcgen::PKCS_RSA_SHA256,
        }
    }

    /// Generates a fresh key pair with the system CSPRNG (aws-lc-rs).
    pub fn generate(self) -> Result<PrivateKey, PkiError> {
        let pair = match self {
            KeyType::Rsa2048 => KeyPair::generate_rsa_for(self.algorithm(), RsaKeySize::_2048)?,
            KeyType::Rsa3072 => KeyPair::generate_rsa_for(self.algorithm(), RsaKeySize::_3072)?,
            KeyType::Rsa4096 => KeyPair::generate_rsa_for(self.algorithm(), RsaKeySize::_4096)?,
            _ => KeyPair::generate_for(self.algorithm())?,
        };
        Ok(PrivateKey { pair, key_type: self })
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyType {
    type Err = PkiError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyType::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| PkiError::UnknownKeyType(s.to_string()))
    }
}

impl TryFrom<String> for KeyType {
    type Error = PkiError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<KeyType> for String {
    fn from(k: KeyType) -> String {
        k.as_str().to_string()
    }
}

/// A private key with its algorithm; serialises as unencrypted PKCS#8.
pub struct PrivateKey {
    pub(crate) pair: KeyPair,
    key_type: KeyType,
}

impl PrivateKey {
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    pub(crate) fn key_pair(&self) -> &KeyPair {
        &self.pair
    }

    /// PKCS#8 DER (OpenSSL, Java and rustls all read it).
    pub fn pkcs8_der(&self) -> &[u8] {
        self.pair.serialized_der()
    }

    pub fn pkcs8_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(self.pair.serialize_pem())
    }

    /// DER SubjectPublicKeyInfo, to match against a certificate.
    pub(crate) fn public_key_der(&self) -> Vec<u8> {
        rcgen::PublicKeyData::subject_public_key_info(&self.pair)
    }

    /// Reads a PKCS#8, SEC1 or PKCS#1 key from DER.
    pub fn from_der(der: &[u8]) -> Result<Self, PkiError> {
        let pair = KeyPair::try_from(der).map_err(|e| PkiError::MalformedKey(e.to_string()))?;
        let key_type = key_type_of(&pair);
        Ok(PrivateKey { pair, key_type })
    }

    /// Reads a PEM private key; an `ENCRYPTED PRIVATE KEY` needs `passphrase`.
    pub fn from_pem(text: &str, passphrase: Option<&[u8]>) -> Result<Self, PkiError> {
        let block = crate::pem::blocks(text.as_bytes())?
            .into_iter()
            .next()
            .ok_or(PkiError::MissingPemItem("PRIVATE KEY block"))?;
        match block.label.as_str() {
            "ENCRYPTED PRIVATE KEY" => {
                let pass = passphrase.ok_or(PkiError::PassphraseRequired)?;
                let der = decrypt_private_key(&block.der, pass)?;
                PrivateKey::from_der(&der)
            }
            "PRIVATE KEY" | "EC PRIVATE KEY" | "RSA PRIVATE KEY" => PrivateKey::from_der(&block.der),
            other => Err(PkiError::MalformedKey(format!("expected a PRIVATE KEY PEM block, found '{other}'"))),
        }
    }
}

fn key_type_of(pair: &KeyPair) -> KeyType {
    let alg = pair.algorithm();
    if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
        KeyType::EcP256
    } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
        KeyType::EcP384
    } else if alg == &rcgen::PKCS_ED25519 {
        KeyType::Ed25519
    } else {
        // RSAPublicKey DER is a little longer than the modulus.
        match pair.public_key_raw().len() {
            0..=300 => KeyType::Rsa2048,
            301..=430 => KeyType::Rsa3072,
            _ => KeyType::Rsa4096,
        }
    }
}

/// PBKDF2 iterations for CA keys at rest (OWASP 2023 figure for HMAC-SHA256).
const PBKDF2_ITERATIONS: u32 = 600_000;

/// Encrypts PKCS#8 DER as PBES2 (PBKDF2-HMAC-SHA256 + AES-256-CBC) and returns
/// an `ENCRYPTED PRIVATE KEY` PEM that `openssl pkey` can also open.
pub fn encrypt_private_key(pkcs8_der: &[u8], passphrase: &[u8]) -> Result<String, PkiError> {
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| PkiError::Encryption("RNG failed".into()))?;
    aws_lc_rs::rand::fill(&mut iv).map_err(|_| PkiError::Encryption("RNG failed".into()))?;
    let params = pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(PBKDF2_ITERATIONS, &salt, &iv)
        .map_err(|e| PkiError::Encryption(e.to_string()))?;
    let info = PrivateKeyInfo::from_der(pkcs8_der).map_err(|e| PkiError::MalformedKey(e.to_string()))?;
    let doc = info.encrypt_with_params(params, passphrase).map_err(|e| PkiError::Encryption(e.to_string()))?;
    let pem = doc.to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF).map_err(|e| PkiError::Encryption(e.to_string()))?;
    Ok(pem.to_string())
}

/// Decrypts an EncryptedPrivateKeyInfo (DER) to PKCS#8 DER.
pub(crate) fn decrypt_private_key(der: &[u8], passphrase: &[u8]) -> Result<Zeroizing<Vec<u8>>, PkiError> {
    let info = EncryptedPrivateKeyInfo::from_der(der).map_err(|e| PkiError::MalformedKey(e.to_string()))?;
    let doc = info.decrypt(passphrase).map_err(|_| PkiError::WrongPassphrase)?;
    // A wrong key can still yield valid CBC padding; the DER check catches it.
    PrivateKeyInfo::from_der(doc.as_bytes()).map_err(|_| PkiError::WrongPassphrase)?;
    Ok(Zeroizing::new(doc.as_bytes().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_type_round_trips_through_pem() {
        for kt in [KeyType::EcP256, KeyType::EcP384, KeyType::Ed25519, KeyType::Rsa2048] {
            let key = kt.generate().unwrap();
            let back = PrivateKey::from_pem(&key.pkcs8_pem(), None).unwrap();
            assert_eq!(back.key_type(), kt);
            assert_eq!(back.public_key_der(), key.public_key_der());
        }
    }

    #[test]
    fn encrypted_key_needs_the_right_passphrase() {
        let key = KeyType::EcP256.generate().unwrap();
        let pem = encrypt_private_key(key.pkcs8_der(), b"correct horse").unwrap();
        assert!(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
        let back = PrivateKey::from_pem(&pem, Some(b"correct horse")).unwrap();
        assert_eq!(back.public_key_der(), key.public_key_der());
        assert!(matches!(PrivateKey::from_pem(&pem, Some(b"wrong")), Err(PkiError::WrongPassphrase)));
        assert!(matches!(PrivateKey::from_pem(&pem, None), Err(PkiError::PassphraseRequired)));
    }

    #[test]
    fn unknown_key_type_is_named() {
        let err = "dsa-1024".parse::<KeyType>().unwrap_err();
        assert!(err.to_string().contains("dsa-1024"));
    }
}
