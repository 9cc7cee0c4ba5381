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

    /// Reads a PKCS#8, SEC1 or PKCS#1 key from DER; keeps it as PKCS#8.
    pub fn from_der(der: &[u8]) -> Result<Self, PkiError> {
        let key = rustls_pki_types::PrivateKeyDer::try_from(der)
            .map_err(|e| PkiError::MalformedKey(format!("not a PKCS#8, SEC1 or PKCS#1 key ({e})")))?;
        Self::from_key_der(&key)
    }

    fn from_key_der(key: &rustls_pki_types::PrivateKeyDer<'_>) -> Result<Self, PkiError> {
        let pkcs8 = to_pkcs8(key)?;
        let pair = KeyPair::try_from(pkcs8.as_slice()).map_err(|e| PkiError::MalformedKey(e.to_string()))?;
        let key_type = key_type_of(&pair);
        Ok(PrivateKey { pair, key_type })
    }

    /// Reads a PEM private key; an `ENCRYPTED PRIVATE KEY` needs `passphrase`.
    pub fn from_pem(text: &str, passphrase: Option<&[u8]>) -> Result<Self, PkiError> {
        Self::from_pem_or_der(text.as_bytes(), passphrase)
    }

    /// Reads a private key as `openssl` writes them: PKCS#8 (plain or
    /// encrypted, which needs `passphrase`), SEC1 or PKCS#1, in PEM or DER.
    pub fn from_pem_or_der(bytes: &[u8], passphrase: Option<&[u8]>) -> Result<Self, PkiError> {
        match crate::pem::key_der(bytes)? {
            crate::pem::KeyDer::Plain(key) => Self::from_key_der(&key),
            crate::pem::KeyDer::Encrypted(der) => {
                let pass = passphrase.ok_or(PkiError::PassphraseRequired)?;
                PrivateKey::from_der(&decrypt_private_key(&der, pass)?)
            }
        }
    }
}

/// PKCS#8 DER of any key rustls reads: PKCS#12 and `pkcs8_pem` need that form.
fn to_pkcs8(key: &rustls_pki_types::PrivateKeyDer<'_>) -> Result<Zeroizing<Vec<u8>>, PkiError> {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING};
    use rustls_pki_types::PrivateKeyDer;
    let bad = |why: String| PkiError::MalformedKey(why);
    let der = match key {
        PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
        PrivateKeyDer::Pkcs1(k) => aws_lc_rs::rsa::KeyPair::from_der(k.secret_pkcs1_der())
            .map_err(|e| bad(format!("PKCS#1 RSA key: {e}")))?
            .as_der()
            .map_err(|_| bad("PKCS#1 RSA key cannot be converted to PKCS#8".into()))?
            .as_ref()
            .to_vec(),
        PrivateKeyDer::Sec1(k) => [&ECDSA_P256_SHA256_ASN1_SIGNING, &ECDSA_P384_SHA384_ASN1_SIGNING]
            .into_iter()
            .find_map(|alg| EcdsaKeyPair::from_private_key_der(alg, k.secret_sec1_der()).ok())
            .ok_or_else(|| bad("SEC1 EC key that is not on P-256 or P-384".into()))?
            .to_pkcs8v1()
            .map_err(|_| bad("SEC1 EC key cannot be converted to PKCS#8".into()))?
            .as_ref()
            .to_vec(),
        _ => return Err(bad("unsupported private key format".into())),
    };
    Ok(Zeroizing::new(der))
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

    /// `openssl genrsa -traditional` and `openssl ecparam -genkey` write
    /// these: they must come back as PKCS#8 (what PKCS#12 and Java take).
    #[test]
    fn pkcs1_and_sec1_keys_are_read_as_pkcs8() {
        use aws_lc_rs::encoding::AsDer;
        let ec = aws_lc_rs::signature::EcdsaKeyPair::generate(&aws_lc_rs::signature::ECDSA_P384_SHA384_ASN1_SIGNING)
            .unwrap();
        let sec1 = ec.private_key().as_der().unwrap();
        let rsa = KeyType::Rsa2048.generate().unwrap();
        let pkcs1 = PrivateKeyInfo::from_der(rsa.pkcs8_der()).unwrap().private_key;
        for (label, der, kt) in
            [("EC PRIVATE KEY", sec1.as_ref(), KeyType::EcP384), ("RSA PRIVATE KEY", pkcs1, KeyType::Rsa2048)]
        {
            for key in
                [PrivateKey::from_pem(&crate::pem_encode(label, der), None), PrivateKey::from_pem_or_der(der, None)]
            {
                let key = key.unwrap_or_else(|e| panic!("{label}: {e}"));
                assert_eq!(key.key_type(), kt);
                PrivateKeyInfo::from_der(key.pkcs8_der()).expect("PKCS#8");
                assert!(key.pkcs8_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
            }
        }
    }

    #[test]
    fn encrypted_pkcs8_der_needs_the_passphrase() {
        let key = KeyType::EcP256.generate().unwrap();
        let pem = encrypt_private_key(key.pkcs8_der(), b"pw").unwrap();
        let der = crate::pem::blocks(pem.as_bytes()).unwrap().remove(0).der;
        assert!(matches!(PrivateKey::from_pem_or_der(&der, None), Err(PkiError::PassphraseRequired)));
        let back = PrivateKey::from_pem_or_der(&der, Some(b"pw")).unwrap();
        assert_eq!(back.public_key_der(), key.public_key_der());
    }

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
