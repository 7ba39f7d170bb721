#!/usr/bin/env bash
# Make sure the images' base, python:3.11-slim-bookworm, is in the local Docker daemon.
# It is pulled when a registry answers; where none does, a stand-in is made from Debian's
# own packages (debootstrap, as root) with the paths the official image has, the host's
# CA bundle and pip's certificate setting, so pip inside a build reaches the package
# index the way the host does. The stand-in carries the label petr4.stand-in=true.
#
#   scripts/python_base.sh [IMAGE]       (DOCKER_HOST names the daemon, as for docker)
set -euo pipefail

image="${1:-python:3.11-slim-bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if docker image inspect "$image" >/dev/null 2>&1; then
    echo "$image: present"
    exit 0
fi
if docker pull --quiet "$image" >/dev/null 2>&1; then
    echo "$image: pulled"
    exit 0
fi
echo "$image: no registry answers; making a stand-in from Debian's packages" >&2
command -v debootstrap >/dev/null || {
    echo "python_base.sh: debootstrap is needed (apt-get install debootstrap)" >&2
    exit 1
}

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase \
    --include=python3.11,python3-venv,python3-pip,ca-certificates,netbase,tzdata \
    bookworm "$root" "$mirror" >"$root.log" 2>&1 || {
    tail -20 "$root.log" >&2
    exit 1
}
rm -f "$root.log"

# The official image's paths: python, python3, pip and pip3 in /usr/local/bin.
for name in python python3; do ln -sf /usr/bin/python3.11 "$root/usr/local/bin/$name"; done
for name in pip pip3; do ln -sf /usr/bin/pip3 "$root/usr/local/bin/$name"; done
# The official image's Python is not Debian's "externally managed" one.
rm -f "$root"/usr/lib/python3.11/EXTERNALLY-MANAGED
# The host's CA bundle: the package index may sit behind the host's own certificate authority.
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\ndisable-pip-version-check = true\n' \
    >"$root/etc/pip.conf"
# What no image needs: package caches, lists, documentation.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/*

tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'LABEL petr4.stand-in=true' \
    --change 'CMD ["python3"]' \
    - "$image" >/dev/null
echo "$image: stand-in made from Debian bookworm"
