#!/usr/bin/env bash
# The x509-limbo suite through ambos's production verifiers
# (crates/tls/examples/limbo.rs), with the result written to docs/limbo.md.
# Fails when more than 14 cases are wrongly accepted (pyca-cryptography's
# figure), when any CRL case is, or when a verifier's second (cached) answer
# differs from a fresh one.
#   ./scripts/limbo.sh
#   LIMBO_JSON=/path/to/x509-limbo.json.gz ./scripts/limbo.sh   another judge file
#   LIMBO_OPTIONAL=1 ./scripts/limbo.sh                        a missing judge file is no error
#   LIMBO_DOC=/tmp/limbo.md ./scripts/limbo.sh                 write the report elsewhere
# docs/limbo.md is rewritten only when the figures or the case lists change,
# so a test run does not leave a diff behind for nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

json="${LIMBO_JSON:-crates/tls/tests/data/x509-limbo.json.gz}"
doc="${LIMBO_DOC:-docs/limbo.md}"
if [ ! -f "$json" ]; then
    echo "limbo: judge file $json not found"
    if [ "${LIMBO_OPTIONAL:-0}" = 1 ]; then
        echo "limbo: skipped (LIMBO_OPTIONAL=1)"
        exit 0
    fi
    exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

start=$(date +%s)
# --workspace: the build `cargo test --workspace` already made (`-p
# ambos-tls` alone unifies features differently and compiles twice).
cargo build --locked -q --workspace --examples
built=$(date +%s)
set +e
"${CARGO_TARGET_DIR:-target}/debug/examples/limbo" \
    --json "$json" --out "$work/results.json" --markdown "$work/cases.md" >"$work/summary.txt"
status=$?
set -e
end=$(date +%s)
cat "$work/summary.txt"
echo "limbo: build $((built - start)) s, run $((end - built)) s (debug build)"
if [ ! -s "$work/cases.md" ]; then
    echo "limbo: the harness wrote no report (exit $status)"
    exit "$status"
fi

# "fresh: 9741 pass, 14 wrongly accepted (0 CRL), 6 wrongly rejected, 19 skipped"
figures() {
    sed -n "s/^$1: \([0-9]*\) pass, \([0-9]*\) wrongly accepted (\([0-9]*\) CRL), \([0-9]*\) wrongly rejected, \([0-9]*\) skipped$/\1 | \2 | \4 | \5 | \3/p" \
        "$work/summary.txt"
}
fresh=$(figures fresh)
primed=$(figures primed)
disagreements=$(sed -n 's/^fresh\/primed disagreements: \([0-9]*\)$/\1/p' "$work/summary.txt")
cases=$(sed -n 's/^cases: \([0-9]*\) .*/\1/p' "$work/summary.txt")
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git status --porcelain -- crates/tls 2>/dev/null)" ]; then
    commit="$commit+changes"
fi
verdict="passes"
[ "$status" -eq 0 ] || verdict="FAILS"

{
    echo "# x509-limbo"
    echo
    echo "[x509-limbo](https://github.com/C2SP/x509-limbo) path-validation cases run through ambos's"
    echo "production verifiers by \`./scripts/limbo.sh\` (part of \`scripts/test.sh\`): CLIENT cases"
    echo "through \`ClientVerifier::verify_client_cert\`, SERVER cases through"
    echo "\`ServerVerifier::verify_server_cert\` with the expected peer name; each case's trusted"
    echo "certificates are the CA certificates of a fresh \`Trust\`, its CRLs (if any) loaded with the"
    echo "default revocation policy (whole chain, unknown status denied). *Primed* runs each case on"
    echo "a verifier that has already verified it once (the second answer counts: the cache of"
    echo "\`ClientVerifier\`); a \`ClientVerifier\` is also primed on every chain of the suite, whatever"
    echo "the case expects. Cases asking for what the verifiers cannot be told (a maximum chain"
    echo "depth, a required key usage, RFC822 peer names, no peer name at all) are skipped."
    echo "The judge file is \`$json\` ($cases cases); the other verifiers' figures were"
    echo "measured on the same file with the published limbo harnesses."
    echo
    echo "<!-- run: $(date -u +%Y-%m-%d) -->"
    echo "| verifier | date | commit | pass | wrongly accepted | wrongly rejected | skipped | CRL cases wrongly accepted |"
    echo "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"
    echo "| ambos-tls, fresh verifier | $(date -u +%Y-%m-%d) | $commit | $fresh |"
    echo "| ambos-tls, primed verifier | $(date -u +%Y-%m-%d) | $commit | $primed |"
    echo "| rustls-webpki 0.103.13 | | | 9703 | 55 | 5 | 17 | |"
    echo "| OpenSSL 3.0.19 | | | 9534 | 118 | 118 | 10 | |"
    echo "| Go 1.27 crypto/x509 | | | 9700 | 51 | 5 | 24 | |"
    echo "| pyca-cryptography 46 | | | 9719 | 14 | 0 | 47 | |"
    echo
    echo "Fresh/primed disagreements: $disagreements. The run $verdict the gate (at most 14 wrongly"
    echo "accepted, none of them a CRL case, no fresh/primed disagreement)."
    echo "<!-- time: build $((built - start)) s, run $((end - built)) s -->"
    echo
    echo "Beyond webpki, \`crates/tls/src/strict.rs\` refuses a verified path when: an extension RFC 5280"
    echo "says MUST be critical is not (basicConstraints of a CA, nameConstraints, policyConstraints);"
    echo "a certificate below the anchor that is not self-issued has no authorityKeyIdentifier;"
    echo "nameConstraints are in a leaf, empty, or have a dNSName with a leading period; a"
    echo "path-relevant extension (AKI, SKI, keyUsage, EKU, SAN, basicConstraints, nameConstraints,"
    echo "policyConstraints, authorityInfoAccess) does not parse; a CA's keyUsage lacks keyCertSign;"
    echo "a leaf with an empty subject lacks a critical SAN; a leaf's dNSName is not a host name"
    echo "(letters, digits, hyphens, as \`ambos issue\` also requires); a key is not RSA 2048-8192 (whole"
    echo "octets), ECDSA P-256/P-384/P-521 or Ed25519. Four rules are CA/Browser Forum profile rather"
    echo "than RFC 5280 and may refuse certificates of other CAs that RFC 5280 allows: a leaf with a"
    echo "subject and a critical SAN, a critical EKU in a leaf, anyExtendedKeyUsage next to named"
    echo "purposes, and an anchor whose AKI is not the plain key identifier (of itself, if self-issued)."
    echo "Certificates from \`ambos\`'s own CA meet all of them, for every key type."
    echo
    cat "$work/cases.md"
} >"$work/limbo.md"

# Rewrite the report only if something but the run's date, commit and time changed.
volatile='^<!-- (run|time):|^\| ambos-tls,'
same=0
if [ -f "$doc" ] && diff -q <(grep -Ev "$volatile" "$doc") <(grep -Ev "$volatile" "$work/limbo.md") >/dev/null &&
    diff -q <(grep -E '^\| ambos-tls,' "$doc" | cut -d'|' -f5-) <(grep -E '^\| ambos-tls,' "$work/limbo.md" | cut -d'|' -f5-) >/dev/null; then
    same=1
fi
if [ "$same" = 1 ]; then
    echo "limbo: $doc unchanged"
else
    mkdir -p "$(dirname "$doc")"
    cp "$work/limbo.md" "$doc"
    echo "limbo: wrote $doc"
fi
exit "$status"
