#!/usr/bin/env bash
# Build a Debian bookworm base image locally, for hosts that cannot pull debian:bookworm-slim
# (no registry access). Uses mmdebstrap's minbase variant, as the official slim image does,
# with the same documentation/locale excludes, from this machine's own Debian mirror.
#   sudo bash docker/build-base.sh [IMAGE]      (default IMAGE: localhost/bookworm-base:latest)
# Then: podman build --pull=never --build-arg BASE_IMAGE=IMAGE ...
# Needs root, mmdebstrap and podman (docker/smoke.sh installs them).
set -euo pipefail

image=${1:-localhost/bookworm-base:latest}
suite=bookworm

# The host's apt sources for this suite as one-line entries: the mirror that works from here
# (a local mirror, a proxy, a snapshot). Falls back to deb.debian.org if the host has none.
host_sources() {
  local files=()
  [ -f /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && files+=("$f")
  done
  [ ${#files[@]} -gt 0 ] || return 0
  awk -v suite="$suite" '
    function flush(   i, j, nu, ns, u, s) {
      if (types ~ /(^| )deb( |$)/) {
        nu = split(uris, u, " "); ns = split(suites, s, " ")
        for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++)
          if (s[j] ~ "^" suite "($|-)") print "deb " u[i] " " s[j] " " comps
      }
      types = uris = suites = comps = ""
    }
    FNR == 1 { flush() }
    FILENAME ~ /\.sources$/ {
      if ($0 ~ /^[ \t]*$/) { flush(); next }
      if ($1 == "Types:") { $1 = ""; types = substr($0, 2) }
      else if ($1 == "URIs:") { $1 = ""; uris = substr($0, 2) }
      else if ($1 == "Suites:") { $1 = ""; suites = substr($0, 2) }
      else if ($1 == "Components:") { $1 = ""; comps = substr($0, 2) }
      next
    }
    $1 == "deb" {
      sub(/\[[^]]*\]/, ""); $0 = $0
      if ($3 ~ "^" suite "($|-)") { line = $1; for (i = 2; i <= NF; i++) line = line " " $i; print line }
    }
    END { flush() }
  ' "${files[@]}" | sort -u
}

mapfile -t mirrors < <(host_sources)
if [ ${#mirrors[@]} -eq 0 ]; then
  mirrors=("deb http://deb.debian.org/debian $suite main"
           "deb http://deb.debian.org/debian $suite-updates main"
           "deb http://deb.debian.org/debian-security $suite-security main")
fi
printf '[build-base] %s\n' "${mirrors[@]}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mmdebstrap --variant=minbase --quiet \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  "$suite" "$work/rootfs.tar" "${mirrors[@]}"
podman import --quiet --change 'CMD ["bash"]' "$work/rootfs.tar" "$image" >/dev/null
echo "[build-base] imported $image ($(du -m "$work/rootfs.tar" | cut -f1) MB)"
