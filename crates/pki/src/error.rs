use thiserror::Error;

/// Everything that can go wrong in the PKI core; variants name the failure so
/// callers can map each to an exit code or HTTP status in one place.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PkiError {
    #[error("unknown key type '{0}' (expected ec-p256, ec-p384, ed25519, rsa-2048, rsa-3072 or rsa-4096)")]
    UnknownKeyType(String),
    #[error("unknown profile '{0}' (expected server, client or server,client)")]
    UnknownProfile(String),
    #[error("invalid subject alternative name '{value}': {why}")]
    InvalidSan { value: String, why: &'static str },
    #[error("invalid name '{0}': use 1-64 characters of letters, digits, '.', '-', '_' or '@', not starting with '.' or '-'")]
    InvalidName(String),
    #[error("invalid duration '{0}' (expected e.g. 500ms, 90s, 15m, 24h, 30d, 1y)")]
    InvalidDuration(String),
    #[error("duration '{text}' is longer than the maximum of {max}")]
    DurationTooLong { text: String, max: String },
    #[error("duration '{0}' must be more than 0")]
    ZeroDuration(String),
    /// A leaf request or batch line that does not validate (the message names the flag or line).
    #[error("{0}")]
    InvalidRequest(String),
    #[error("invalid serial '{0}' (expected hex digits, optionally with colons)")]
    InvalidSerial(String),
    #[error("malformed PEM: {0}")]
    MalformedPem(String),
    #[error("no {0} found in the input")]
    MissingPemItem(&'static str),
    #[error("malformed certificate: {0}")]
    MalformedCertificate(String),
    #[error("malformed certificate signing request: {0}")]
    MalformedCsr(String),
    #[error("the certificate signing request's signature does not verify")]
    BadCsrSignature,
    #[error("the certificate signing request asks for '{0}', which the {1} does not allow")]
    CsrNotAllowed(String, &'static str),
    #[error("malformed private key: {0}")]
    MalformedKey(String),
    #[error("wrong passphrase for the encrypted private key")]
    WrongPassphrase,
    #[error("the private key does not match the certificate")]
    KeyMismatch,
    /// The key belongs to a later certificate of the chain (1-based `position`).
    #[error("the chain is out of order: the first certificate must be the leaf (the key matches certificate {position}, {subject})")]
    ChainOutOfOrder { position: usize, subject: String },
    #[error("the private key is encrypted and no passphrase was given")]
    PassphraseRequired,
    #[error("unrecognised input: not a certificate, CSR, CRL, private key or PKCS#12 file")]
    UnrecognisedInput,
    #[error("PKCS#12: {0}")]
    Pkcs12(String),
    #[error("the issuing CA expired on {0}; nothing can be issued")]
    IssuerExpired(String),
    #[error("certificate generation failed: {0}")]
    Generation(#[from] rcgen::Error),
    #[error("key encryption failed: {0}")]
    Encryption(String),
}

impl PkiError {
    /// Whether what the caller gave was wrong (exit code 2), not the operation (1).
    pub fn is_input(&self) -> bool {
        !matches!(self, PkiError::Generation(_) | PkiError::Encryption(_) | PkiError::IssuerExpired(_))
    }
}
