#!/usr/bin/env bash
# Installs the outside programs the interop tests talk to, on Debian 12.
# Idempotent: does nothing when everything is present.
set -euo pipefail

need=()
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
command -v nginx >/dev/null || need+=(nginx-light)
# HAProxy: the third proxy in bench/compare.sh.
command -v haproxy >/dev/null || need+=(haproxy)
command -v keytool >/dev/null || need+=(openjdk-17-jre-headless)
# `java Client.java` (single-file source launch) needs the compiler module.
command -v javac >/dev/null || need+=(openjdk-17-jdk-headless)
command -v python3 >/dev/null || need+=(python3)
# groff renders `ambos man`'s page in the CLI tests.
command -v groff >/dev/null || need+=(groff-base)
# PostgreSQL: the CA's shared store; the tests run a throwaway cluster
# (scripts/pg-cluster.sh), never Debian's own.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
# The deployment files' checks: `systemd-analyze verify` and `security` on
# the units (systemd need not run), readelf on the image's binary.
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v readelf >/dev/null || need+=(binutils)
# The browser tests: Debian's headless Chromium and Firefox ESR, driven from
# Node.js by playwright-core and puppeteer-core (tests/browser/run.mjs);
# certutil and pk12util make the throwaway NSS databases through which the
# browsers trust the test CA (and Firefox holds its client certificate).
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/firefox-esr ] || need+=(firefox-esr)
command -v certutil >/dev/null || need+=(libnss3-tools)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)

if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# pyca/cryptography: the interop tests' second, independent PKI (CRLs that
# RFC 5280 forbids, decoy CAs) and its Python clients.
if ! python3 -c "import cryptography" 2>/dev/null; then
    python3 -m pip install -q --disable-pip-version-check cryptography 2>/dev/null \
        || python3 -m pip install -q --disable-pip-version-check --break-system-packages cryptography
fi
# grpcio: a real, outside gRPC stack for the proxy's gRPC tests.
if ! python3 -c "import grpc" 2>/dev/null; then
    python3 -m pip install -q --disable-pip-version-check grpcio 2>/dev/null \
        || python3 -m pip install -q --disable-pip-version-check --break-system-packages grpcio
fi
# websockets: a real WebSocket client and server for the proxy's WebSocket
# tests; h2: an HTTP/2 client stack for WebSocket over HTTP/2 (RFC 8441);
# jwcrypto: an independent JOSE library minting the tokens the proxy checks;
# authlib (with requests): an OAuth client checking ambos serve's metadata
# and token endpoint; kubernetes_validate: the Kubernetes examples checked
# against the API schemas.
for mod in websockets h2 jwcrypto authlib requests kubernetes_validate; do
    if ! python3 -c "import $mod" 2>/dev/null; then
        python3 -m pip install -q --disable-pip-version-check "$mod" 2>/dev/null \
            || python3 -m pip install -q --disable-pip-version-check --break-system-packages "$mod"
    fi
done
# playwright-core, puppeteer-core and axe-core at the versions
# tests/browser/package-lock.json pins (neither driver downloads a browser
# of its own); `npm ls` fails when node_modules does not hold exactly those.
browser="$(dirname "$0")/../tests/browser"
if ! npm ls --prefix "$browser" >/dev/null 2>&1; then
    npm ci --prefix "$browser" --no-audit --no-fund --loglevel=error
fi
# Debian starts nginx (and PostgreSQL) on install; the tests run their own instances.
for svc in nginx haproxy postgresql; do
    if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
        systemctl stop "$svc" || true
    fi
done
echo "deps: $(openssl version | cut -d' ' -f1-2), $(nginx -v 2>&1 | cut -d' ' -f3), $(java -version 2>&1 | awk 'NR == 1'), $(chromium --version 2>/dev/null), $(firefox-esr --version 2>/dev/null), node $(node --version)"
