use crate::{Authority, PkiError, Serial};
use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams};
use std::fmt;
use std::str::FromStr;
use time::OffsetDateTime;

/// RFC 5280 reason codes that an operator may choose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(into = "String")]
pub enum RevocationReason {
    Unspecified,
    KeyCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
}

impl RevocationReason {
    pub const ALL: [RevocationReason; 5] = [
        RevocationReason::Unspecified,
        RevocationReason::KeyCompromise,
        RevocationReason::AffiliationChanged,
        RevocationReason::Superseded,
        RevocationReason::CessationOfOperation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::Unspecified => "unspecified",
            RevocationReason::KeyCompromise => "key-compromise",
            RevocationReason::AffiliationChanged => "affiliation-changed",
            RevocationReason::Superseded => "superseded",
            RevocationReason::CessationOfOperation => "cessation-of-operation",
        }
    }

    /// The CRLReason code (RFC 5280 5.3.1).
    pub fn code(self) -> u8 {
        match self {
            RevocationReason::Unspecified => 0,
            RevocationReason::KeyCompromise => 1,
            RevocationReason::AffiliationChanged => 3,
            RevocationReason::Superseded => 4,
            RevocationReason::CessationOfOperation => 5,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }

    fn to_rcgen(self) -> Option<rcgen::RevocationReason> {
        // RFC 5280: "unspecified" SHOULD NOT be encoded; leave the extension out.
        match self {
            RevocationReason::Unspecified => None,
            RevocationReason::KeyCompromise => Some(rcgen::RevocationReason::KeyCompromise),
            RevocationReason::AffiliationChanged => Some(rcgen::RevocationReason::AffiliationChanged),
            RevocationReason::Superseded => Some(rcgen::RevocationReason::Superseded),
            RevocationReason::CessationOfOperation => Some(rcgen::RevocationReason::CessationOfOperation),
        }
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<RevocationReason> for String {
    fn from(r: RevocationReason) -> String {
        r.as_str().to_string()
    }
}

impl FromStr for RevocationReason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('_', "-");
        Self::ALL.into_iter().find(|r| r.as_str() == norm || r.as_str().replace('-', "") == norm).ok_or_else(|| {
            format!("unknown revocation reason '{s}' (expected {})", Self::ALL.map(|r| r.as_str()).join(", "))
        })
    }
}

/// One line of a CRL.
#[derive(Clone, Debug)]
pub struct RevokedEntry {
    pub serial: Serial,
    pub revoked_at: OffsetDateTime,
    pub reason: RevocationReason,
}

/// Builds a signed CRL v2 (CRL number, AKI, reason codes) for `ca`.
pub fn build_crl(
    ca: &Authority,
    number: u64,
    revoked: &[RevokedEntry],
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
) -> Result<Vec<u8>, PkiError> {
    let params = CertificateRevocationListParams {
        this_update,
        next_update,
        crl_number: number.to_be_bytes().to_vec().into(),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|r| RevokedCertParams {
                serial_number: r.serial.as_bytes().to_vec().into(),
                revocation_time: r.revoked_at,
                reason_code: r.reason.to_rcgen(),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(ca.issuer())?;
    Ok(crl.der().to_vec())
}
