//! PKI core of ambos: keys, certificate profiles, issuance, CSR signing, CRLs,
//! PKCS#12 and inspection. Pure functions over bytes: no file or network I/O,
//! so the CLI, the CA server and benchmarks share one implementation.
#![forbid(unsafe_code)]

mod authority;
mod crl;
mod duration;
mod error;
mod inspect;
mod key;
mod p12;
mod pem;
mod profile;
mod request;
mod rfc3339;
mod serial;

pub use authority::{check_crl_url, csr_public_key, issued_ttl, Authority, IssuedCert, NewCa};
pub use crl::{build_crl, RevocationReason, RevokedEntry};
pub use duration::{format_duration, parse_duration, parse_duration_within, MAX_DURATION};
pub use error::PkiError;
pub use inspect::{
    inspect, InspectedCert, InspectedCrl, InspectedCsr, InspectedJwt, InspectedRevocation, Inspection, SanEntry,
};
pub use key::{encrypt_private_key, KeyType, PrivateKey};
pub use p12::{check_key_is_leafs, keystore, truststore, P12Password};
pub use pem::{
    certs_from_pem, certs_from_pem_or_der, csr_from_pem_or_der, pem_encode, pem_items_in_place,
    private_key_from_pem_or_der, sha256_hex,
};
pub use profile::{
    create_csr, general_name_text, san_ip, validate_name, validate_spiffe_id, LeafRequest, Profile, San,
};
pub use request::{parse_batch, parse_names, LeafSpec};
pub use rfc3339::{rfc3339, rfc3339_unix};
pub use serial::Serial;

pub use time::OffsetDateTime;
