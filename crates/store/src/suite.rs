//! The store's behaviour, checked on every backend behind [`Store`]: SQLite
//! always, PostgreSQL when `AMBOS_TEST_POSTGRES` names a server (a fresh
//! database per test; scripts/test.sh starts a throwaway cluster and sets
//! `AMBOS_REQUIRE_POSTGRES=1`, which makes a missing server a failure).
use crate::*;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A store of one backend, what it is called, and what keeps it alive.
pub(crate) struct Backend {
    pub name: &'static str,
    pub at: StoreLocation,
    pub store: Store,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    /// Another connection to the same store (another CA node).
    pub fn another(&self) -> Store {
        Store::open(&self.at, false, None).unwrap()
    }

    /// `work(node, store)` on two more connections (two CA nodes) at once.
    pub fn on_two_nodes<T: Send>(&self, work: impl Fn(usize, Store) -> T + Sync) -> Vec<T> {
        let nodes = [self.another(), self.another()];
        std::thread::scope(|scope| {
            let work = &work;
            let handles: Vec<_> =
                nodes.into_iter().enumerate().map(|(node, store)| scope.spawn(move || work(node, store))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }
}

/// A database of its own on the test server, with the schema.
pub(crate) fn postgres_database() -> Option<String> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let Ok(base) = std::env::var("AMBOS_TEST_POSTGRES") else {
        assert!(
            std::env::var("AMBOS_REQUIRE_POSTGRES").is_err(),
            "AMBOS_REQUIRE_POSTGRES is set but AMBOS_TEST_POSTGRES is not"
        );
        return None;
    };
    let name = format!("ambos_store_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    let mut admin = ::postgres::Client::connect(&base, ::postgres::NoTls).expect("AMBOS_TEST_POSTGRES");
    admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    let (head, query) = base.split_once('?').unwrap_or((&base, ""));
    let server = &head[..head.rfind('/').expect("a database in AMBOS_TEST_POSTGRES")];
    Some(format!("{server}/{name}?{query}"))
}

/// Empty stores (the schema applied), one per backend.
pub(crate) fn fresh() -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let at = StoreLocation::Dir(dir.path().to_path_buf());
    let mut all = vec![Backend { name: "sqlite", store: Store::open(&at, true, None).unwrap(), at, _dir: Some(dir) }];
    if let Some(url) = postgres_database() {
        let at = StoreLocation::Postgres(url);
        all.push(Backend { name: "postgres", store: Store::open(&at, true, None).unwrap(), at, _dir: None });
    }
    all
}

/// Stores holding [`new_ca`].
pub(crate) fn initialised() -> Vec<Backend> {
    let mut all = fresh();
    for b in &mut all {
        b.store.init_authorities(&new_ca(), &[]).unwrap();
    }
    all
}

fn authority(role: AuthorityRole) -> AuthorityRecord {
    AuthorityRecord {
        role,
        name: "test".into(),
        key_type: "ec-p256".into(),
        cert_der: vec![1, 2, 3],
        key_pem: "KEY".into(),
        key_encrypted: false,
        created_at: 1,
    }
}

pub(crate) fn cert(serial: &str, name: &str, not_after: i64) -> CertRecord {
    CertRecord {
        serial: serial.into(),
        name: name.into(),
        profile: "client".into(),
        issuer: AuthorityRole::Intermediate,
        subject: format!("CN={name}"),
        sans: vec!["dns:a".into(), "uri:spiffe://x/y".into()],
        not_before: 0,
        not_after,
        sha256: "00".into(),
        cert_der: vec![9],
        issued_at: 5,
        revocation: None,
        admin: false,
    }
}

/// A new CA whose intermediate is certificate "1a", with one setting.
pub(crate) fn new_ca() -> NewCaRecords {
    let mut intermediate_cert = cert("1a", "test", 5000);
    intermediate_cert.issuer = AuthorityRole::Root;
    NewCaRecords {
        root: authority(AuthorityRole::Root),
        intermediate: authority(AuthorityRole::Intermediate),
        intermediate_cert,
        settings: vec![("crl_url".into(), "https://ca.test/v1/crl".into())],
    }
}

fn token(hash: &str, expires_at: i64) -> TokenRecord {
    TokenRecord {
        hash: hash.into(),
        name: "dev".into(),
        profile: "client".into(),
        sans: vec!["uri:spiffe://acme.test/dev".into()],
        ous: vec![],
        cert_ttl: 3600,
        expires_at,
        created_at: 0,
        spent_at: None,
        spent_serial: None,
    }
}

fn signing_key(kid: &str, at: i64) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: kid.into(),
        key_pem: format!("PEM {kid}"),
        key_encrypted: true,
        public_jwk: format!("{{\"kid\":\"{kid}\"}}"),
        created_at: at,
        retired_at: None,
        publish_until: None,
    }
}

#[test]
fn init_stores_the_ca_with_its_intermediate_and_settings_once() {
    for mut b in fresh() {
        let n = b.name;
        assert!(matches!(b.store.authorities(), Err(StoreError::NotInitialised(_))), "{n}");
        b.store.init_authorities(&new_ca(), &[]).unwrap();
        let a = b.store.authorities().unwrap();
        assert_eq!((a.root.role, a.intermediate.role), (AuthorityRole::Root, AuthorityRole::Intermediate), "{n}");
        assert_eq!(b.store.cert_by_serial("1a").unwrap().expect("listed").issuer, AuthorityRole::Root, "{n}");
        assert_eq!(b.store.setting("crl_url").unwrap().as_deref(), Some("https://ca.test/v1/crl"), "{n}");
        assert_eq!(b.store.count().unwrap(), 1, "{n}");
        let mut again = new_ca();
        again.intermediate_cert.serial = "2b".into();
        again.settings = vec![("crl_url".into(), "https://other.test/v1/crl".into())];
        assert!(matches!(b.store.init_authorities(&again, &[]), Err(StoreError::AlreadyInitialised(_))), "{n}");
        assert!(b.store.cert_by_serial("2b").unwrap().is_none(), "{n}: a refused init writes nothing");
        assert_eq!(b.store.setting("crl_url").unwrap().as_deref(), Some("https://ca.test/v1/crl"), "{n}");
        b.store.set_setting("crl_url", None).unwrap();
        assert_eq!(b.store.setting("crl_url").unwrap(), None, "{n}");
    }
}

#[test]
fn a_duplicate_serial_aborts_the_whole_batch() {
    for mut b in initialised() {
        let n = b.name;
        b.store.insert_certs(&[cert("aa", "one", 100)], &[]).unwrap();
        let err = b.store.insert_certs(&[cert("bb", "two", 100), cert("aa", "dup", 100)], &[]);
        assert!(matches!(err, Err(StoreError::DuplicateSerial(ref x)) if x == "aa"), "{n}: {err:?}");
        assert_eq!(b.store.count().unwrap(), 2, "{n}: the intermediate and 'aa'");
        assert!(b.store.cert_by_serial("bb").unwrap().is_none(), "{n}");
        assert_eq!(b.store.certs_by_name("one").unwrap()[0].sans, ["dns:a", "uri:spiffe://x/y"], "{n}");
    }
}

#[test]
fn a_revocation_happens_once_and_crls_are_numbered() {
    for mut b in initialised() {
        let (n, s) = (b.name, &mut b.store);
        s.insert_certs(&[cert("aa", "one", 100), cert("bb", "two", 1000)], &[]).unwrap();
        let r = Revocation { revoked_at: 50, reason: 1 };
        assert_eq!(s.revoke("aa", r, &[]).unwrap().sans.len(), 2, "{n}");
        assert!(matches!(s.revoke("aa", r, &[]), Err(StoreError::AlreadyRevoked(_))), "{n}");
        assert!(matches!(s.revoke("cc", r, &[]), Err(StoreError::UnknownCertificate(_))), "{n}");
        assert_eq!(s.revoked_by(AuthorityRole::Intermediate).unwrap(), vec![("aa".to_string(), r)], "{n}");
        assert_eq!(s.revocation_mark().unwrap(), (1, 50), "{n}");
        assert_eq!(s.list(&CertFilter { revoked_only: true, ..Default::default() }).unwrap().len(), 1, "{n}");
        let expiring = s.list(&CertFilter { expiring_before: Some((10, 2000)), ..Default::default() }).unwrap();
        assert_eq!(expiring.iter().map(|c| c.serial.as_str()).collect::<Vec<_>>(), ["bb"], "{n}");
        assert_eq!(s.next_crl_number(AuthorityRole::Intermediate).unwrap(), 1, "{n}");
        assert_eq!(s.next_crl_number(AuthorityRole::Intermediate).unwrap(), 2, "{n}");
        assert_eq!(s.next_crl_number(AuthorityRole::Root).unwrap(), 1, "{n}");
    }
}

#[test]
fn current_shows_the_newest_unrevoked_certificate_of_each_name() {
    for mut b in initialised() {
        let (n, s) = (b.name, &mut b.store);
        let certs = [cert("a1", "one", 100), cert("a2", "one", 200), cert("b1", "two", 100), cert("b2", "two", 200)];
        s.insert_certs(&certs, &[]).unwrap();
        s.revoke("b2", Revocation { revoked_at: 50, reason: 1 }, &[]).unwrap();
        let serials = |f: &CertFilter| {
            let leaves = s.list(f).unwrap().into_iter().filter(|c| c.name == "one" || c.name == "two");
            leaves.map(|c| c.serial).collect::<Vec<_>>()
        };
        let current = CertFilter { current: true, ..Default::default() };
        assert_eq!(serials(&current), ["a2", "b1"], "{n}: a1 renewed, b2 revoked");
        assert_eq!(serials(&CertFilter { name: Some("one".into()), ..current.clone() }), ["a2"], "{n}");
    }
}

#[test]
fn a_list_page_filters_sorts_by_expiry_and_skips() {
    for mut b in initialised() {
        let (n, s) = (b.name, &mut b.store);
        let mut certs = [cert("c1", "p", 300), cert("c2", "p", 100), cert("c3", "p", 200), cert("d1", "q", 50)];
        certs[3].profile = "server".into();
        s.insert_certs(&certs, &[]).unwrap();
        s.revoke("c3", Revocation { revoked_at: 10, reason: 1 }, &[]).unwrap();
        let serials = |f: CertFilter| s.list(&f).unwrap().into_iter().map(|c| c.serial).collect::<Vec<_>>();
        let mine = CertFilter { serial_prefix: Some("C".into()), by_expiry: true, ..Default::default() };
        assert_eq!(serials(mine.clone()), ["c2", "c3", "c1"], "{n}: soonest expiry first");
        assert_eq!(serials(CertFilter { limit: Some(1), offset: 1, ..mine.clone() }), ["c3"], "{n}");
        assert_eq!(serials(CertFilter { limit: Some(5), offset: 9, ..mine.clone() }), [] as [&str; 0], "{n}");
        assert_eq!(serials(CertFilter { valid_at: Some(150), ..mine.clone() }), ["c1"], "{n}: c3 is revoked");
        assert_eq!(serials(CertFilter { expired_at: Some(150), ..mine.clone() }), ["c2"], "{n}");
        let server = CertFilter { profile: Some("server".into()), ..Default::default() };
        assert_eq!(serials(server), ["d1"], "{n}");
        let counted = CertFilter { limit: Some(1), ..mine.clone() };
        assert_eq!(s.count_matching(&counted).unwrap(), 3, "{n}: a count ignores the page");
        let expired = CertFilter { expired_at: Some(150), ..mine.clone() };
        assert_eq!(s.count_matching(&expired).unwrap(), 1, "{n}");
        let leaves = CertFilter { issuer: Some(AuthorityRole::Intermediate), ..Default::default() };
        assert_eq!(s.count_matching(&leaves).unwrap() + 1, s.count().unwrap(), "{n}: all but the intermediate");
        let wild = CertFilter { serial_prefix: Some("%_".into()), ..Default::default() };
        assert_eq!(serials(wild).len(), s.count().unwrap() as usize, "{n}: no wildcard but the prefix's own");
    }
}

#[test]
fn recent_audit_entries_come_newest_first_filtered_by_action_and_actor() {
    for mut b in initialised() {
        let (n, s) = (b.name, &mut b.store);
        let entry = |actor: &str, action: &str, subject: &str| AuditRecord {
            at: 5,
            node: "n".into(),
            actor: actor.into(),
            action: action.into(),
            subject: subject.into(),
            serial: None,
            outcome: "ok".into(),
            detail: String::new(),
        };
        s.record_audit(&[
            entry("cli", "revoke", "a"),
            entry("admin:0a", "revoke", "b"),
            entry("admin:0a", "issue", "c"),
        ])
        .unwrap();
        let subjects = |action, actor, limit| {
            s.audit_recent(action, actor, limit).unwrap().into_iter().map(|e| e.subject).collect::<Vec<_>>()
        };
        assert_eq!(subjects(Some("revoke"), None, 10), ["b", "a"], "{n}");
        assert_eq!(subjects(None, Some("admin:"), 10), ["c", "b"], "{n}");
        assert_eq!(subjects(Some("revoke"), Some("admin"), 10), ["b"], "{n}");
        assert_eq!(subjects(None, None, 1), ["c"], "{n}");
        assert_eq!(subjects(None, Some("%"), 10), [] as [&str; 0], "{n}: no wildcard");
    }
}

#[test]
fn recent_tokens_come_newest_first_and_at_most_the_limit() {
    for mut b in initialised() {
        let (n, s) = (b.name, &mut b.store);
        let mut older = token("old", 100);
        older.created_at -= 10;
        s.insert_tokens(&[older, token("new", 100)], &[]).unwrap();
        let hashes = |limit| s.recent_tokens(limit).unwrap().into_iter().map(|t| t.hash).collect::<Vec<_>>();
        assert_eq!(hashes(10), ["new", "old"], "{n}");
        assert_eq!(hashes(1), ["new"], "{n}");
    }
}

#[test]
fn a_token_buys_exactly_one_certificate() {
    for mut b in initialised() {
        let (n, s) = (b.name, &mut b.store);
        let before = s.count().unwrap();
        s.insert_tokens(&[token("h1", 100), token("h2", 5)], &[]).unwrap();
        let spends = [
            ("h1".into(), cert("s1", "dev", 10)),
            ("h1".into(), cert("s2", "dev", 10)),
            ("h2".into(), cert("s3", "dev", 10)),
            ("nope".into(), cert("s4", "dev", 10)),
        ];
        let results = s.spend_tokens(&spends, 10, "node-a").unwrap();
        assert!(results[0].is_ok(), "{n}");
        assert!(matches!(results[1], Err(StoreError::TokenSpent)), "{n}");
        assert!(matches!(results[2], Err(StoreError::TokenExpired)), "{n}");
        assert!(matches!(results[3], Err(StoreError::UnknownToken)), "{n}");
        assert_eq!(s.count().unwrap(), before + 1, "{n}: only the winning spend stored a certificate");
        assert_eq!(s.token("h1").unwrap().unwrap().spent_serial.as_deref(), Some("s1"), "{n}");
        // Each spend's audit entry came with it, in the same transaction.
        let trail = s.audit_since(0).unwrap();
        let view: Vec<(&str, &str, Option<&str>)> =
            trail.iter().map(|e| (e.actor.as_str(), e.outcome.as_str(), e.serial.as_deref())).collect();
        assert_eq!(
            view,
            [
                ("token:h1", "ok", Some("s1")),
                ("token:h1", "refused", None),
                ("token:h2", "refused", None),
                ("token:nope", "refused", None)
            ],
            "{n}"
        );
        assert!(trail.iter().all(|e| e.node == "node-a" && e.action == "enroll"), "{n}");
        // A serial already taken: refused, and the token stays unspent.
        s.insert_tokens(&[token("h3", 100)], &[]).unwrap();
        let r = s.spend_tokens(&[("h3".into(), cert("1a", "dev", 10))], 10, "node-a").unwrap();
        assert!(matches!(r[0], Err(StoreError::DuplicateSerial(_))), "{n}: {:?}", r[0]);
        assert_eq!(s.token("h3").unwrap().unwrap().spent_at, None, "{n}");
        assert_eq!(s.cert_by_serial("1a").unwrap().unwrap().name, "test", "{n}: not overwritten");
        s.set_admin("s1", &[]).unwrap();
        assert!(s.cert_by_serial("s1").unwrap().unwrap().admin, "{n}");
    }
}

/// Two CA nodes (two connections) spending the same tokens at the same
/// time: each token buys exactly one certificate.
#[test]
fn two_nodes_racing_for_the_same_tokens_spend_each_once() {
    for mut b in initialised() {
        let n = b.name;
        let tokens: Vec<TokenRecord> = (0..60).map(|i| token(&format!("t{i}"), i64::MAX)).collect();
        b.store.insert_tokens(&tokens, &[]).unwrap();
        let before = b.store.count().unwrap();
        let wins = b.on_two_nodes(|node, mut store| {
            // One spend per transaction, as enrollments come in.
            (0..60)
                .filter(|i| {
                    let spend = [(format!("t{i}"), cert(&format!("n{node}-{i}"), "dev", 10))];
                    matches!(store.spend_tokens(&spend, 10, "node-a").unwrap()[0], Ok(()))
                })
                .count()
        });
        assert_eq!(wins.iter().sum::<usize>(), 60, "{n}: every token spent once ({wins:?})");
        assert_eq!(b.store.count().unwrap(), before + 60, "{n}: one certificate per token");
        for i in 0..60 {
            let serial = b.store.token(&format!("t{i}")).unwrap().unwrap().spent_serial.unwrap();
            assert!(b.store.cert_by_serial(&serial).unwrap().is_some(), "{n}: t{i} names a stored certificate");
        }
    }
}

/// Two nodes committing groups of the same tokens in opposite orders (group
/// commit): no deadlock fails a group, and each token is spent once.
#[test]
fn overlapping_groups_in_opposite_orders_do_not_deadlock() {
    for mut b in initialised() {
        let n = b.name;
        let tokens: Vec<TokenRecord> = (0..200).map(|i| token(&format!("g{i:03}"), i64::MAX)).collect();
        b.store.insert_tokens(&tokens, &[]).unwrap();
        let wins = b.on_two_nodes(|node, mut store| {
            let mut order: Vec<usize> = (0..200).collect();
            if node == 1 {
                order.reverse();
            }
            let mut won = 0;
            for group in order.chunks(20) {
                let spends: Vec<(String, CertRecord)> =
                    group.iter().map(|i| (format!("g{i:03}"), cert(&format!("g{node}-{i}"), "dev", 10))).collect();
                let results = store.spend_tokens(&spends, 10, "node-a").expect("the group commits");
                for r in &results {
                    // A loser reads the token spent; no database error reaches a client.
                    assert!(matches!(r, Ok(()) | Err(StoreError::TokenSpent)), "{r:?}");
                }
                won += results.iter().filter(|r| r.is_ok()).count();
            }
            won
        });
        assert_eq!(wins.iter().sum::<usize>(), 200, "{n}: each token once ({wins:?})");
    }
}

/// CRL numbers drawn by two nodes at once never repeat.
#[test]
fn crl_numbers_from_two_nodes_are_all_different() {
    for b in initialised() {
        let n = b.name;
        let mut numbers: Vec<u64> = b
            .on_two_nodes(|_, mut s| {
                (0..40).map(|_| s.next_crl_number(AuthorityRole::Intermediate).unwrap()).collect::<Vec<_>>()
            })
            .concat();
        numbers.sort_unstable();
        assert_eq!(numbers, (1..=80).collect::<Vec<u64>>(), "{n}");
    }
}

#[test]
fn a_new_signing_key_retires_the_current_one_in_the_same_transaction() {
    for mut b in initialised() {
        let (n, s) = (b.name, &mut b.store);
        assert!(s.signing_keys().unwrap().is_empty(), "{n}");
        s.add_signing_key(&signing_key("k1", 100), 0, &[]).unwrap();
        s.add_signing_key(&signing_key("k2", 200), 3800, &[]).unwrap();
        let keys = s.signing_keys().unwrap();
        let view: Vec<_> = keys.iter().map(|k| (k.kid.as_str(), k.retired_at, k.publish_until)).collect();
        assert_eq!(view, [("k1", Some(200), Some(3800)), ("k2", None, None)], "{n}");
        assert!(keys.iter().all(|k| k.key_encrypted), "{n}");
        // A duplicate kid aborts the whole change: k2 stays the signing key.
        assert!(s.add_signing_key(&signing_key("k1", 300), 9999, &[]).is_err(), "{n}");
        assert_eq!(s.signing_keys().unwrap()[1].retired_at, None, "{n}");
    }
}

#[test]
fn grants_in_force_per_identity_and_revoked_once() {
    for mut b in initialised() {
        let (n, s) = (b.name, &mut b.store);
        let grant = |identity: &str, audience: &str| GrantRecord {
            id: 0,
            identity: identity.into(),
            audience: audience.into(),
            scopes: vec!["read".into(), "write".into()],
            created_at: 10,
            revoked_at: None,
        };
        let a = s.insert_grant(&grant("spiffe://t/alice", "pay"), &no_audit).unwrap();
        let c = s.insert_grant(&grant("spiffe://t/alice", "ship"), &no_audit).unwrap();
        s.insert_grant(&grant("bob", "pay"), &no_audit).unwrap();
        assert_eq!(s.grants(Some("spiffe://t/alice")).unwrap().len(), 2, "{n}");
        assert_eq!(s.grants(Some("spiffe://t/alice")).unwrap()[0].scopes, ["read", "write"], "{n}");
        let revoked = s.revoke_grant(a, 20, &no_audit).unwrap();
        assert_eq!((revoked.identity.as_str(), revoked.revoked_at), ("spiffe://t/alice", Some(20)), "{n}");
        let left: Vec<i64> = s.grants(Some("spiffe://t/alice")).unwrap().iter().map(|g| g.id).collect();
        assert_eq!(left, [c], "{n}");
        assert_eq!(s.grants(None).unwrap().len(), 3, "{n}: the list keeps revoked grants");
        assert!(matches!(s.revoke_grant(a, 30, &no_audit), Err(StoreError::GrantRevoked(_))), "{n}");
        assert!(matches!(s.revoke_grant(99, 30, &no_audit), Err(StoreError::UnknownGrant(99))), "{n}");
    }
}

#[test]
fn a_postgres_schema_is_checked_at_open() {
    let Some(url) = postgres_database() else { return };
    let e = PgStore::open(&url, None).err().expect("no schema yet");
    assert!(matches!(e, StoreError::NotInitialised(_)) && e.to_string().contains("ambos init"), "{e}");
    assert_eq!(PgStore::migrate(&url, None).unwrap(), (0, 3));
    assert_eq!(PgStore::migrate(&url, None).unwrap(), (3, 3), "idempotent");
    let mut c = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
    // A database made before the console's index gets it.
    c.batch_execute("DROP INDEX certificate_state; UPDATE ambos_schema SET version = 2").unwrap();
    assert_eq!(PgStore::migrate(&url, None).unwrap(), (2, 3));
    let index: bool = c.query_one("SELECT to_regclass('certificate_state') IS NOT NULL", &[]).unwrap().get(0);
    assert!(index);
    c.batch_execute("UPDATE ambos_schema SET version = 99").unwrap();
    let e = PgStore::open(&url, None).err().expect("a newer schema");
    assert!(matches!(e, StoreError::SchemaTooNew { found: 99, .. }) && e.is_input(), "{e}");
    let wrong = url.replace("//ambos@", "//nobody@");
    let e = PgStore::open(&wrong, None).err().expect("no such role");
    assert!(matches!(e, StoreError::Connect { .. }) && e.is_input() && e.to_string().contains("nobody"), "{e}");
}

/// A store copied to every backend holds the same: serials, revocations,
/// spent tokens, CRL numbers, keys and grants; a store with a CA is not
/// written over.
#[test]
fn a_copy_to_another_backend_holds_the_same_and_never_overwrites() {
    for mut from in initialised() {
        let s = &mut from.store;
        s.insert_certs(&[cert("aa", "one", 100), cert("bb", "two", 1000)], &[]).unwrap();
        s.revoke("aa", Revocation { revoked_at: 50, reason: 1 }, &[]).unwrap();
        s.insert_tokens(&[token("h1", 100), token("h2", 100)], &[]).unwrap();
        s.spend_tokens(&[("h1".into(), cert("s1", "dev", 10))], 10, "node-a").unwrap();
        s.next_crl_number(AuthorityRole::Intermediate).unwrap();
        s.next_crl_number(AuthorityRole::Intermediate).unwrap();
        s.add_signing_key(&signing_key("k1", 100), 0, &[]).unwrap();
        let grant = GrantRecord {
            id: 0,
            identity: "alice".into(),
            audience: "pay".into(),
            scopes: vec!["a".into()],
            created_at: 1,
            revoked_at: None,
        };
        let g = s.insert_grant(&grant, &no_audit).unwrap();
        s.revoke_grant(g, 5, &no_audit).unwrap();
        s.record_audit(&[audit_event("revoke", 50), audit_event("enroll", 60)]).unwrap();
        let snap = s.snapshot().unwrap();
        assert_eq!(snap.audit.len(), 3, "the spend's entry and the two recorded");
        for mut to in fresh() {
            let (a, b) = (from.name, to.name);
            to.store.restore(&snap).unwrap();
            assert_eq!(format!("{:?}", to.store.snapshot().unwrap()), format!("{snap:?}"), "{a} -> {b}");
            assert_eq!(to.store.next_crl_number(AuthorityRole::Intermediate).unwrap(), 3, "{a} -> {b}");
            assert!(
                to.store.insert_grant(&grant, &no_audit).unwrap() > g,
                "{a} -> {b}: new grant ids after the copied ones"
            );
            let again = to.store.restore(&snap);
            assert!(matches!(again, Err(StoreError::AlreadyInitialised(_))), "{a} -> {b}: {again:?}");
            if let StoreLocation::Postgres(url) = &to.at {
                // Vacuumed and analyzed right after the load, as autovacuum would be later.
                let mut c = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
                let row = c
                    .query_one(
                        "SELECT last_vacuum IS NOT NULL, last_analyze IS NOT NULL FROM pg_stat_user_tables \
                         WHERE relname = 'certificate'",
                        &[],
                    )
                    .unwrap();
                assert_eq!((row.get::<_, bool>(0), row.get::<_, bool>(1)), (true, true), "{a} -> {b}");
            }
        }
    }
}

fn audit_event(action: &str, at: i64) -> AuditRecord {
    AuditRecord {
        at,
        node: "ca1:9443".into(),
        actor: "token:0123456789ab".into(),
        action: action.into(),
        subject: "dev".into(),
        serial: (action != "revoke").then(|| "aa".into()),
        outcome: "ok".into(),
        detail: String::new(),
    }
}

#[test]
fn the_audit_trail_keeps_its_entries_in_order_and_reads_from_a_time() {
    for mut b in initialised() {
        let (n, s) = (b.name, &mut b.store);
        s.record_audit(&[audit_event("issue", 10), audit_event("revoke", 20)]).unwrap();
        s.record_audit(&[audit_event("enroll", 30)]).unwrap();
        let all = s.audit_since(0).unwrap();
        assert_eq!(all.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["issue", "revoke", "enroll"], "{n}");
        assert_eq!(all[1].serial, None, "{n}");
        assert_eq!(all[0], audit_event("issue", 10), "{n}");
        assert_eq!(s.audit_since(20).unwrap().len(), 2, "{n}");
    }
}

/// The entries of a grant change that writes none.
fn no_audit(_: &GrantRecord) -> Vec<AuditRecord> {
    Vec::new()
}

/// A change that fails rolls its audit entries back with it.
#[test]
fn a_write_that_fails_leaves_no_audit_entry() {
    for mut b in initialised() {
        let (n, s) = (b.name, &mut b.store);
        let entry = |action: &str| [audit_event(action, 10)];
        let r = Revocation { revoked_at: 50, reason: 1 };
        let taken = cert("1a", "dup", 100);
        assert!(matches!(s.init_authorities(&new_ca(), &entry("init")), Err(StoreError::AlreadyInitialised(_))), "{n}");
        let dup = s.insert_certs(&[cert("aa", "one", 100), taken], &entry("issue"));
        assert!(matches!(dup, Err(StoreError::DuplicateSerial(_))), "{n}: {dup:?}");
        assert!(matches!(s.revoke("cc", r, &entry("revoke")), Err(StoreError::UnknownCertificate(_))), "{n}");
        assert!(matches!(s.set_admin("cc", &entry("admin")), Err(StoreError::UnknownCertificate(_))), "{n}");
        s.insert_tokens(&[token("h1", 100)], &[]).unwrap();
        assert!(s.insert_tokens(&[token("h2", 100), token("h1", 100)], &entry("token-create")).is_err(), "{n}");
        s.add_signing_key(&signing_key("k1", 100), 0, &[]).unwrap();
        assert!(s.add_signing_key(&signing_key("k1", 300), 9999, &entry("key-rotate")).is_err(), "{n}");
        let revoked = s.revoke_grant(99, 30, &|_| entry("oauth-revoke").to_vec());
        assert!(matches!(revoked, Err(StoreError::UnknownGrant(99))), "{n}");
        assert_eq!(s.audit_since(i64::MIN).unwrap(), [], "{n}");
        assert!(s.cert_by_serial("aa").unwrap().is_none() && s.token("h2").unwrap().is_none(), "{n}");
    }
}

/// Each change's entries are there once it committed; a grant's name its id.
#[test]
fn a_write_that_commits_has_its_audit_entries() {
    for mut b in fresh() {
        let (n, s) = (b.name, &mut b.store);
        let entry = |action: &str| [audit_event(action, 10)];
        s.init_authorities(&new_ca(), &entry("init")).unwrap();
        s.insert_certs(
            &[cert("aa", "one", 100), cert("bb", "two", 100)],
            &[audit_event("issue", 11), audit_event("issue", 12)],
        )
        .unwrap();
        s.revoke("aa", Revocation { revoked_at: 50, reason: 1 }, &entry("revoke")).unwrap();
        s.insert_tokens(&[token("h1", 100)], &entry("token-create")).unwrap();
        s.set_admin("bb", &entry("admin")).unwrap();
        s.add_signing_key(&signing_key("k1", 100), 0, &entry("key-rotate")).unwrap();
        let named = |action: &'static str| {
            move |g: &GrantRecord| vec![AuditRecord { detail: format!("grant {}", g.id), ..audit_event(action, 10) }]
        };
        let grant = GrantRecord {
            id: 0,
            identity: "alice".into(),
            audience: "pay".into(),
            scopes: vec![],
            created_at: 1,
            revoked_at: None,
        };
        let id = s.insert_grant(&grant, &named("oauth-allow")).unwrap();
        s.revoke_grant(id, 20, &named("oauth-revoke")).unwrap();
        let trail = s.audit_since(i64::MIN).unwrap();
        let view: Vec<(&str, &str)> = trail.iter().map(|e| (e.action.as_str(), e.detail.as_str())).collect();
        let grant = format!("grant {id}");
        assert_eq!(
            view,
            [
                ("init", ""),
                ("issue", ""),
                ("issue", ""),
                ("revoke", ""),
                ("token-create", ""),
                ("admin", ""),
                ("key-rotate", ""),
                ("oauth-allow", grant.as_str()),
                ("oauth-revoke", grant.as_str())
            ],
            "{n}"
        );
        assert_eq!(trail[2], audit_event("issue", 12), "{n}");
    }
}

#[test]
fn activity_is_counted_per_day_and_class_from_the_audit_trail() {
    const DAY: i64 = 86_400;
    for mut b in initialised() {
        let (n, s) = (b.name, &mut b.store);
        let refused = AuditRecord { outcome: "refused".into(), ..audit_event("enroll", 1000 + DAY) };
        let trail = [
            audit_event("issue", 999),
            audit_event("issue", 1000),
            audit_event("sign", 1000 + DAY - 1),
            audit_event("enroll", 1000 + DAY),
            refused,
            audit_event("renew", 1000 + DAY + 5),
            audit_event("renew", 1000 + 3 * DAY),
            audit_event("revoke", 1000 + 3 * DAY + 1),
            audit_event("token-create", 1000 + 3 * DAY),
            audit_event("admin", 1000 + 3 * DAY),
        ];
        s.record_audit(&trail).unwrap();
        assert_eq!(
            s.activity_per_day(1000).unwrap(),
            [
                (0, Activity::Issuance, 2),
                (1, Activity::Issuance, 1),
                (1, Activity::Renewal, 1),
                (3, Activity::Renewal, 1),
                (3, Activity::Revocation, 1),
            ],
            "{n}: before since, refused and other actions are not counted"
        );
        assert_eq!(s.activity_per_day(1000 + 4 * DAY).unwrap(), [], "{n}");
    }
}

#[test]
fn expiries_are_counted_per_day_and_a_serial_prefix_is_a_hex_range() {
    assert_eq!(crate::hex_prefix_end("a9f").as_deref(), Some("aa"));
    assert_eq!(crate::hex_prefix_end("09").as_deref(), Some("0a"));
    assert_eq!(crate::hex_prefix_end("ff"), None);
    assert_eq!(crate::hex_prefix_end(""), None);
    const DAY: i64 = 86_400;
    for mut b in initialised() {
        let (n, s) = (b.name, &mut b.store);
        let certs = [
            cert("e1", "p", 1010),
            cert("e2", "p", 1000 + DAY - 1),
            cert("ef1", "p", 1020),
            cert("e3", "p", 1000 + DAY),
            cert("e4", "p", 1000 + 5 * DAY),
            cert("e5", "p", 1000),
        ];
        s.insert_certs(&certs, &[]).unwrap();
        s.revoke("e4", Revocation { revoked_at: 10, reason: 1 }, &[]).unwrap();
        let live = CertFilter {
            issuer: Some(AuthorityRole::Intermediate),
            valid_at: Some(1000),
            serial_prefix: Some("E".into()),
            ..Default::default()
        };
        assert_eq!(s.expiries_per_day(&live, 1000).unwrap(), [(0, 3), (1, 1)], "{n}: e4 revoked, e5 expired");
        let serials = |p: &str| {
            let f = CertFilter { serial_prefix: Some(p.into()), ..Default::default() };
            let mut v = s.list(&f).unwrap().into_iter().map(|c| c.serial).collect::<Vec<_>>();
            v.sort();
            v
        };
        assert_eq!(serials("ef"), ["ef1"], "{n}");
        assert_eq!(serials("e"), ["e1", "e2", "e3", "e4", "e5", "ef1"], "{n}");
        assert_eq!(serials("f"), [] as [&str; 0], "{n}");
        let mine = CertFilter { serial_prefix: Some("e".into()), ..Default::default() };
        let san = |t: &str| s.count_matching(&CertFilter { san: Some(t.into()), ..mine.clone() }).unwrap();
        assert_eq!(san("SPIFFE://X/"), 6, "{n}: any case, inside a SAN");
        assert_eq!((san("%"), san("_"), san("dns:b")), (0, 0, 0), "{n}: wildcards are literal");
    }
}
