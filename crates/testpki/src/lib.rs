//! A generated test PKI (dev-only): a root and an intermediate, and leaf
//! identities with explicit validity for every case a verifier must judge
//! (valid, expired, not yet valid, from another CA, revoked with a CRL,
//! wrong extended key usage, sent without its intermediate). A program makes
//! the chains, so that no test sleeps for a certificate to expire.
//!
//! Everything goes through `ambos_pki`'s public API, as the product issues.
#![forbid(unsafe_code)]

use ambos_pki::{
    build_crl, pem_encode, Authority, KeyType, LeafRequest, NewCa, OffsetDateTime, Profile, RevocationReason,
    RevokedEntry, San, Serial,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

const DAY: Duration = Duration::from_secs(86_400);

/// A root CA and the intermediate that issues the leaves, both valid from a
/// day ago for `ca_days` days.
pub struct TestPki {
    pub name: String,
    /// The root's certificate (DER): the one trust anchor.
    pub root_der: Vec<u8>,
    /// The root as a signer (for a CRL that covers the intermediate).
    pub root: Authority,
    /// The issuing intermediate.
    pub intermediate: Authority,
}

/// A leaf certificate and its key, with the intermediate it chains to.
#[derive(Clone)]
pub struct Leaf {
    pub serial: Serial,
    pub profile: Profile,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// Leaf DER, then the intermediate's (the leaf alone for [`Leaf::leaf_only`]).
    pub chain: Vec<Vec<u8>>,
    pub key_pkcs8_der: Vec<u8>,
}

impl Leaf {
    pub fn cert_der(&self) -> &[u8] {
        &self.chain[0]
    }

    /// The chain as PEM: leaf first, then the intermediate (if any).
    pub fn chain_pem(&self) -> String {
        self.chain.iter().map(|c| pem_encode("CERTIFICATE", c)).collect()
    }

    pub fn key_pem(&self) -> String {
        pem_encode("PRIVATE KEY", &self.key_pkcs8_der)
    }

    /// The same certificate and key with no intermediate in its chain.
    pub fn leaf_only(&self) -> Leaf {
        Leaf { chain: vec![self.chain[0].clone()], ..self.clone() }
    }

    /// Writes `dir/NAME.crt` (chain) and `dir/NAME.key`; returns both paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let (crt, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
        std::fs::write(&crt, self.chain_pem()).unwrap_or_else(|e| panic!("{}: {e}", crt.display()));
        std::fs::write(&key, self.key_pem()).unwrap_or_else(|e| panic!("{}: {e}", key.display()));
        (crt, key)
    }
}

/// What to issue: a name, a purpose, SANs and an explicit validity window.
#[derive(Clone, Debug)]
pub struct LeafSpec {
    pub name: String,
    pub profile: Profile,
    /// `kind:value` SANs as `ambos issue --san` takes them.
    pub sans: Vec<String>,
    pub organizational_units: Vec<String>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl LeafSpec {
    /// Valid from an hour ago for a day.
    pub fn new(name: &str, profile: Profile) -> LeafSpec {
        let now = OffsetDateTime::now_utc();
        LeafSpec {
            name: name.to_string(),
            profile,
            sans: Vec::new(),
            organizational_units: Vec::new(),
            not_before: now - Duration::from_secs(3600),
            not_after: now + DAY,
        }
    }

    pub fn sans(mut self, sans: &[&str]) -> LeafSpec {
        self.sans = sans.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Valid from `not_before` to `not_after`, either or both in the past or the future.
    pub fn window(mut self, not_before: OffsetDateTime, not_after: OffsetDateTime) -> LeafSpec {
        self.not_before = not_before;
        self.not_after = not_after;
        self
    }
}

impl TestPki {
    /// A fresh P-256 root and intermediate named `name`, valid for 30 days.
    pub fn new(name: &str) -> TestPki {
        TestPki::with_key_type(name, KeyType::EcP256, 30)
    }

    pub fn with_key_type(name: &str, key_type: KeyType, ca_days: u64) -> TestPki {
        let now = OffsetDateTime::now_utc();
        let ttl = DAY * ca_days as u32;
        let ca = NewCa::create(name, key_type, ttl, ttl, now).expect("test CA");
        let intermediate =
            Authority::new(&ca.intermediate_cert_der, ca.intermediate_key, &ca.root_cert_der).expect("intermediate");
        let root = Authority::new(&ca.root_cert_der, ca.root_key, &ca.root_cert_der).expect("root");
        TestPki { name: name.to_string(), root_der: ca.root_cert_der, root, intermediate }
    }

    pub fn root_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.root_der)
    }

    /// Issues `spec` from the intermediate; the chain holds the intermediate.
    pub fn issue(&self, spec: &LeafSpec) -> Leaf {
        let mut req = LeafRequest::new(&spec.name, spec.profile);
        req.sans = spec.sans.iter().map(|s| s.parse::<San>().unwrap_or_else(|e| panic!("SAN {s}: {e}"))).collect();
        req.organizational_units = spec.organizational_units.clone();
        req.not_before = Some(spec.not_before);
        let secs = (spec.not_after - spec.not_before).whole_seconds();
        assert!(secs > 0, "{}: not_after must follow not_before", spec.name);
        req.ttl = Duration::from_secs(secs as u64);
        // "now" inside the issuer's window, whatever the leaf's.
        let issued = self.intermediate.issue(&req, OffsetDateTime::now_utc()).expect("issue test leaf");
        let key_pkcs8_der = issued.key.as_ref().expect("generated key").pkcs8_der().to_vec();
        Leaf {
            serial: issued.serial,
            profile: issued.profile,
            not_before: issued.not_before,
            not_after: issued.not_after,
            chain: vec![issued.cert_der, self.intermediate.cert_der().to_vec()],
            key_pkcs8_der,
        }
    }

    /// A client certificate valid now (client-auth EKU).
    pub fn client(&self, name: &str, sans: &[&str]) -> Leaf {
        self.issue(&LeafSpec::new(name, Profile::Client).sans(sans))
    }

    /// A server certificate valid now (server-auth EKU).
    pub fn server(&self, name: &str, sans: &[&str]) -> Leaf {
        self.issue(&LeafSpec::new(name, Profile::Server).sans(sans))
    }

    /// A client certificate that expired an hour ago (valid for a day before).
    pub fn expired(&self, name: &str) -> Leaf {
        let now = OffsetDateTime::now_utc();
        let hour = Duration::from_secs(3600);
        self.issue(&LeafSpec::new(name, Profile::Client).window(now - DAY - hour, now - hour))
    }

    /// A client certificate that becomes valid in a day.
    pub fn not_yet_valid(&self, name: &str) -> Leaf {
        let now = OffsetDateTime::now_utc();
        self.issue(&LeafSpec::new(name, Profile::Client).window(now + DAY, now + DAY * 2))
    }

    /// A certificate for servers presented as a client's (wrong EKU).
    pub fn wrong_eku(&self, name: &str) -> Leaf {
        self.server(name, &[])
    }

    /// A client certificate valid now, without its intermediate in the chain.
    pub fn leaf_only(&self, name: &str) -> Leaf {
        self.client(name, &[]).leaf_only()
    }

    /// A client certificate valid now from an unrelated CA (named "Other").
    /// For an impostor CA with this one's names, `TestPki::new(&pki.name)`.
    pub fn other_ca(&self, name: &str) -> Leaf {
        TestPki::new("Other").client(name, &[])
    }

    /// The intermediate's CRL (DER) revoking `leaves`, current for a day.
    pub fn crl(&self, leaves: &[&Leaf]) -> Vec<u8> {
        let now = OffsetDateTime::now_utc();
        let revoked: Vec<RevokedEntry> = leaves
            .iter()
            .map(|l| RevokedEntry {
                serial: l.serial.clone(),
                revoked_at: now,
                reason: RevocationReason::KeyCompromise,
            })
            .collect();
        build_crl(&self.intermediate, 1, &revoked, now, now + DAY).expect("test CRL")
    }

    /// The intermediate's CRL, revoking nothing, whose nextUpdate was a day ago.
    pub fn stale_crl(&self) -> Vec<u8> {
        let now = OffsetDateTime::now_utc();
        build_crl(&self.intermediate, 1, &[], now - DAY * 2, now - DAY).expect("test CRL")
    }

    /// A client certificate valid now and the intermediate's CRL revoking it.
    pub fn revoked(&self, name: &str) -> (Leaf, Vec<u8>) {
        let leaf = self.client(name, &[]);
        let crl = self.crl(&[&leaf]);
        (leaf, crl)
    }

    /// Writes `dir/ca.crt` (the root) and returns its path.
    pub fn write_root(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.crt");
        std::fs::write(&path, self.root_pem()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }
}

/// A [`TestPki`] with its files in a temporary directory.
pub struct TestPkiDir {
    pub pki: TestPki,
    pub dir: tempfile::TempDir,
}

impl TestPkiDir {
    /// A fresh PKI with `ca.crt` (the root) written.
    pub fn new(name: &str) -> TestPkiDir {
        let pki = TestPki::new(name);
        let dir = tempfile::tempdir().expect("temp dir");
        pki.write_root(dir.path());
        TestPkiDir { pki, dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `leaf` as `NAME.crt` / `NAME.key` here.
    pub fn write(&self, leaf: &Leaf, name: &str) -> (PathBuf, PathBuf) {
        leaf.write(self.dir.path(), name)
    }
}

/// A token issuer for tests and benches: a fresh P-256 key (PKCS#8 DER,
/// for signing ES256 JWTs) and its public JWKS (RFC 7517, `kid` "k1")
/// written to `dir/jwks.json`.
pub fn jwt_signer(dir: &Path) -> (Vec<u8>, PathBuf) {
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use base64::Engine;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("P-256 key");
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).expect("P-256 key");
    // The public key is the uncompressed point 0x04 || x || y.
    let point = pair.public_key().as_ref();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwks = format!(
        r#"{{"keys":[{{"kty":"EC","crv":"P-256","kid":"k1","use":"sig","x":"{}","y":"{}"}}]}}"#,
        b64(&point[1..33]),
        b64(&point[33..65])
    );
    let path = dir.join("jwks.json");
    std::fs::write(&path, jwks).expect("write jwks.json");
    (pkcs8.as_ref().to_vec(), path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_identity_has_the_validity_and_chain_it_promises() {
        let pki = TestPki::new("T");
        let now = OffsetDateTime::now_utc();
        let ok = pki.client("ok", &["spiffe://t.test/ok"]);
        assert!(ok.not_before < now && now < ok.not_after);
        assert_eq!(ok.chain.len(), 2);
        assert_eq!(ok.chain[1], pki.intermediate.cert_der());
        let expired = pki.expired("old");
        assert!(expired.not_after < now, "{}", expired.not_after);
        let future = pki.not_yet_valid("new");
        assert!(future.not_before > now, "{}", future.not_before);
        assert_eq!(pki.leaf_only("alone").chain.len(), 1);
        assert_eq!(pki.wrong_eku("srv").profile, Profile::Server);
        let other = pki.other_ca("ok");
        assert_ne!(other.chain[1], pki.intermediate.cert_der());
        let (revoked, crl) = pki.revoked("gone");
        assert_ne!(pki.crl(&[]), crl);
        assert!(
            revoked.chain_pem().matches("BEGIN CERTIFICATE").count() == 2 && revoked.key_pem().contains("PRIVATE KEY")
        );
    }
}
