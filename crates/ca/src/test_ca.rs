//! A fresh CA in a temporary directory for unit tests, and CSRs to send it.
use crate::{CertificateAuthority, InitOptions};
use ambos_pki::{Authority, KeyType, LeafRequest, PrivateKey, Profile, San};
use ambos_store::AuthorityRole;
use std::time::Duration;

pub(crate) struct TestCa {
    pub ca: CertificateAuthority,
    pub signer: Authority,
    pub dir: tempfile::TempDir,
}

/// An unencrypted P-256 CA named `name`.
pub(crate) fn test_ca(name: &str) -> TestCa {
    let dir = tempfile::tempdir().unwrap();
    let opts = InitOptions {
        root_ttl: Duration::from_secs(10 * 86_400),
        intermediate_ttl: Duration::from_secs(5 * 86_400),
        ..InitOptions::unencrypted(name)
    };
    let ca = CertificateAuthority::init(dir.path(), &opts).unwrap();
    let signer = ca.authority(AuthorityRole::Intermediate, None).unwrap();
    TestCa { ca, signer, dir }
}

impl TestCa {
    /// Issues and stores a client certificate for `name` (SAN `uri:spiffe://acme.test/NAME`).
    pub fn issue_client(&mut self, name: &str) -> ambos_pki::IssuedCert {
        let mut req = LeafRequest::new(name, Profile::Client);
        req.sans = vec![spiffe(name)];
        req.ttl = Duration::from_secs(3600);
        self.ca.issue(&self.signer, &[req]).unwrap().remove(0)
    }
}

pub(crate) fn spiffe(name: &str) -> San {
    San::Uri(format!("spiffe://acme.test/{name}"))
}

/// A new P-256 key and a CSR for it with CN `cn` and `sans`.
pub(crate) fn csr(cn: &str, sans: &[San]) -> (PrivateKey, Vec<u8>) {
    let key = KeyType::EcP256.generate().unwrap();
    let der = ambos_pki::create_csr(&key, Some(cn), sans).unwrap();
    (key, der)
}

/// The error of a call that must fail (`IssuedCert` has no `Debug` for `unwrap_err`).
pub(crate) fn refused<T>(r: crate::Result<T>) -> crate::CaError {
    match r {
        Ok(_) => panic!("accepted, expected a refusal"),
        Err(e) => e,
    }
}
