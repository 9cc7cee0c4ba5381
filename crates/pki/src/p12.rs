use crate::{PkiError, PrivateKey};
use p12_keystore::{Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKeyChain};

/// PBKDF2 iterations for PKCS#12 encryption and MAC (OpenSSL 3 uses 2048).
const P12_ITERATIONS: u32 = 100_000;

fn p12_err(e: impl std::fmt::Display) -> PkiError {
    PkiError::Pkcs12(e.to_string())
}

fn write(store: &KeyStore, password: &str) -> Result<Vec<u8>, PkiError> {
    // PBES2 AES-256-CBC + HMAC-SHA256: read by OpenSSL 3 without -legacy and by Java 17.
    store
        .writer(password)
        .encryption_algorithm(EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
        .encryption_iterations(P12_ITERATIONS)
        .mac_algorithm(MacAlgorithm::HmacSha256)
        .mac_iterations(P12_ITERATIONS)
        .write()
        .map_err(p12_err)
}

/// A PKCS#12 password kept out of `Debug` output and zeroed on drop.
#[derive(Clone)]
pub struct P12Password(pub zeroize::Zeroizing<String>);

impl std::fmt::Debug for P12Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("P12Password(..)")
    }
}

impl std::ops::Deref for P12Password {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// Whether the key with SubjectPublicKeyInfo `spki` is the leaf's (the
/// first of `chain`); a key of a later certificate means the file lists the
/// chain in the wrong order, which is said so rather than "does not match".
pub fn check_key_is_leafs(chain: &[impl AsRef<[u8]>], spki: &[u8]) -> Result<(), PkiError> {
    for (i, der) in chain.iter().enumerate() {
        let (_, c) = x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| PkiError::MalformedCertificate(e.to_string()))?;
        if c.public_key().raw == spki {
            return match i {
                0 => Ok(()),
                _ => {
                    let cn = c.subject().iter_common_name().next().and_then(|a| a.as_str().ok());
                    let subject = cn.map(|cn| format!("CN={cn}")).unwrap_or_else(|| c.subject().to_string());
                    Err(PkiError::ChainOutOfOrder { position: i + 1, subject })
                }
            };
        }
    }
    Err(PkiError::KeyMismatch)
}

/// A keystore with one private key entry: the key and its chain (leaf first).
pub fn keystore(alias: &str, key: &PrivateKey, chain_der: &[Vec<u8>], password: &str) -> Result<Vec<u8>, PkiError> {
    let leaf = chain_der.first().ok_or(PkiError::MissingPemItem("certificate"))?;
    check_key_is_leafs(chain_der, &key.public_key_der())?;
    let certs = chain_der.iter().map(|d| Certificate::from_der(d).map_err(p12_err)).collect::<Result<Vec<_>, _>>()?;
    let local_key_id = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, leaf);
    let pk = p12_keystore::PrivateKey::from_der(key.pkcs8_der()).map_err(p12_err)?;
    let mut store = KeyStore::new();
    store.add_entry(
        alias,
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(local_key_id.as_ref().to_vec(), pk, certs)),
    );
    write(&store, password)
}

/// A truststore of trusted certificate entries (Java lists them as
/// trustedCertEntry thanks to the Oracle trusted-key-usage attribute).
pub fn truststore(entries: &[(String, Vec<u8>)], password: &str) -> Result<Vec<u8>, PkiError> {
    let mut store = KeyStore::new();
    for (alias, der) in entries {
        store.add_entry(alias, KeyStoreEntry::Certificate(Certificate::from_der(der).map_err(p12_err)?));
    }
    write(&store, password)
}
