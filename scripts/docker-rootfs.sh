#!/usr/bin/env bash
# The runtime filesystem of deploy/docker/Dockerfile, laid out from a built
# binary: the Dockerfile runs this script, and the test suite runs it
# without a container engine.
#   scripts/docker-rootfs.sh target/release/ambos OUT
# Fails if the binary needs a shared library the runtime image
# (distroless/cc-debian12: glibc and libgcc) does not have.
set -euo pipefail
bin="$1"; out="$2"
allowed="libc.so.6 libm.so.6 libgcc_s.so.1 libpthread.so.0 libdl.so.2 librt.so.1 ld-linux-x86-64.so.2 ld-linux-aarch64.so.1"
for lib in $(readelf -d "$bin" | sed -nE 's/.*\(NEEDED\).*\[(.*)\]/\1/p'); do
    case " $allowed " in
    *" $lib "*) ;;
    *) echo "docker-rootfs.sh: $bin needs $lib, which the runtime image does not have" >&2; exit 1 ;;
    esac
done
install -D -m 0755 "$bin" "$out/usr/local/bin/ambos"
install -d -m 0700 "$out/var/lib/ambos"
install -d -m 0755 "$out/etc/ambos"
"$out/usr/local/bin/ambos" --version >/dev/null
