//! The real CRL load path, for measuring CPU time and peak RSS: a CRL file
//! read, decoded and loaded into a `Trust` held by a `ClientVerifier`, as
//! the proxy does at start and on reload.
//!
//! ```text
//! cargo build --release -p ambos-tls --example crl_load
//! /usr/bin/time -v target/release/examples/crl_load big.pem root.crt
//! ```
use ambos_tls::{load_certs, load_crls, ClientVerifier, Trust, TrustOptions};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, crl, root] = args.as_slice() else {
        eprintln!("usage: crl_load CRL_FILE ROOT_CERT_FILE");
        std::process::exit(2);
    };
    let t = Instant::now();
    let path = Path::new(crl);
    let crls = load_crls(path).unwrap_or_else(|e| fail(&e));
    let read = t.elapsed();
    let opts = TrustOptions {
        ca_certs: load_certs(Path::new(root)).unwrap_or_else(|e| fail(&e)),
        crls: crls.into_iter().map(|c| (crl.clone(), c)).collect(),
        revocation: Some(Default::default()),
        eku_if_present: false,
    };
    let trust = Trust::new(opts).unwrap_or_else(|e| fail(&e));
    let verifier = ClientVerifier::new(Arc::new(trust), true);
    let total = t.elapsed();
    let crls = verifier.trust().crls();
    println!(
        "{} CRL(s), {} entries; load_crls {:.3} s, total {:.3} s",
        crls.summaries().len(),
        crls.entries(),
        read.as_secs_f64(),
        total.as_secs_f64()
    );
    for s in crls.summaries() {
        println!("  {} number {:?} problem {:?}", s.issuer, s.number, s.problem);
    }
}

fn fail(e: &ambos_tls::TlsError) -> ! {
    eprintln!("error: {}", ambos_tls::error_chain(e));
    std::process::exit(1);
}
