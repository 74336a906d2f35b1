#!/usr/bin/env bash
# Build the image and try it end to end on this machine with podman, no registry needed:
#   sudo bash docker/smoke.sh
# Installs podman and mmdebstrap if missing (apt), builds a Debian bookworm base when no
# debian:bookworm-slim is present, builds the image, runs it with random-weight models, checks
# health, the non-root user, the OpenAI API and gradio_client against `python -m asr transcribe`
# outside the container, writes into the outputs volume, starts new containers on the same cache
# volume (random:tiny, then random:large, whose 250 M parameters take long enough to generate that
# the cache's saving shows above start-up noise), prints sizes and times, and removes everything
# it made (KEEP=1 keeps it).
# Not part of the test suite: it downloads gigabytes and takes many minutes.
#
# Environment: PYTHON (the project's venv python, for the outside run and the clients; default
# .venv/bin/python), BASE_IMAGE (skip the base step), CA_BUNDLE (CA bundle for pip in the build;
# default: the system bundle if present, which covers TLS-inspecting proxies), KEEP=1.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# What the image promises. Checked here against the built image, and by
# tests/test_container_files.py against Dockerfile, compose.yaml and .env.example.
CONTAINER_PORT=7860
HEALTH_PATH=/health
APP_UID=10001
CACHE_VOLUME=/cache
OUTPUTS_VOLUME=/outputs
MODEL_FLAGS=(--model random:tiny --punctuation random:tiny)
LARGE_FLAGS=(--model random:large --punctuation random:large)
AUDIO=tests/audio/asr_example_zh.wav

PY=${PYTHON:-$ROOT/.venv/bin/python}
KEEP=${KEEP:-0}
RUN_ID=$(date +%Y%m%d%H%M%S)-$$
IMAGE=localhost/seaco-webui:smoke-$RUN_ID
CONTAINER=seaco-smoke-$RUN_ID
VOLUME=seaco-smoke-cache-$RUN_ID
LARGE_VOLUME=seaco-smoke-cache-large-$RUN_ID
# runc: crun refuses a mixed cgroup v1/v2 layout; the limits: root may not raise its open-file
# limit past 20000 on some hosts, and podman asks for more by default.
PODMAN=(podman --runtime runc)
LIMITS=(--ulimit nofile=20000:20000 --ulimit nproc=32768:32768)
WORK=$(mktemp -d)
made_base="" made_container="" made_volumes=() made_image=""
declare -A TIMES

say() { printf '[smoke] %s\n' "$*"; }
die() { say "FAILED: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
# podman without systemd (as here) complains on every start and removal that it cannot set up
# the health check's timer; `podman healthcheck run` still works. Keep that line out of the log.
pm() { "${PODMAN[@]}" "$@" 2> >(grep -v 'unable to get systemd connection' >&2); }
in_image() { pm run --rm "${LIMITS[@]}" --entrypoint /bin/sh "$IMAGE" -c "$1"; }

cleanup() {
  local rc=$?
  if [ "$KEEP" = 1 ]; then
    say "KEEP=1: left image $IMAGE, container $CONTAINER, volumes ${made_volumes[*]}, files in $WORK"
    exit "$rc"
  fi
  [ -n "$made_container" ] && "${PODMAN[@]}" rm -f -t 5 "$CONTAINER" >/dev/null 2>&1
  for volume in "${made_volumes[@]}"; do "${PODMAN[@]}" volume rm -f "$volume" >/dev/null 2>&1; done
  if [ -n "$made_image" ]; then
    "${PODMAN[@]}" rmi -f "$IMAGE" >/dev/null 2>&1
    # The build's other images (the builder stage, cached steps): those that were not there before.
    comm -13 <(sort -u "$WORK/images.before") <("${PODMAN[@]}" images -qa --no-trunc | sort -u) |
      xargs -r "${PODMAN[@]}" rmi -f >/dev/null 2>&1
  fi
  [ -n "$made_base" ] && "${PODMAN[@]}" rmi -f "$made_base" >/dev/null 2>&1
  rm -rf "$WORK"
  say "removed what this run made"
  exit "$rc"
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || die "run as root (podman rootful, apt, mmdebstrap): sudo bash docker/smoke.sh"
[ -x "$PY" ] || die "no project python at $PY: run 'bash run.sh install' first or set PYTHON"
# Polite on shared machines: the build is mostly download, the rest can wait for others.
renice -n 10 -p $$ >/dev/null || true
say "free disk: $(df -h --output=avail /var/lib 2>/dev/null | tail -1 | tr -d ' ') in /var/lib (needs about 15 GB)"

# ---- tools ------------------------------------------------------------------------------------
start=$(now)
if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v mmdebstrap >/dev/null; then
  command -v apt-get >/dev/null || die "podman, runc and mmdebstrap are missing and there is no apt-get"
  say "installing podman, runc, mmdebstrap (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    podman buildah fuse-overlayfs uidmap slirp4netns passt crun runc mmdebstrap \
    containernetworking-plugins netavark aardvark-dns catatonit >/dev/null
fi
TIMES[tools]=$(since "$start")
say "$(podman --version)"

# ---- base image -------------------------------------------------------------------------------
start=$(now)
if [ -z "${BASE_IMAGE:-}" ]; then
  if "${PODMAN[@]}" image exists docker.io/library/debian:bookworm-slim; then
    BASE_IMAGE=docker.io/library/debian:bookworm-slim
  else
    BASE_IMAGE=localhost/seaco-smoke-base:$RUN_ID
    say "no local debian:bookworm-slim: building $BASE_IMAGE with mmdebstrap"
    made_base=$BASE_IMAGE
    bash docker/build-base.sh "$BASE_IMAGE"
  fi
fi
TIMES[base]=$(since "$start")
say "base image: $BASE_IMAGE"

# ---- build ------------------------------------------------------------------------------------
CA_BUNDLE=${CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}
secret=()
if [ -n "$CA_BUNDLE" ] && [ -s "$CA_BUNDLE" ]; then
  secret=(--secret "id=ca_bundle,src=$CA_BUNDLE")
  say "CA bundle for pip in the build: $CA_BUNDLE (a build secret, not in the image)"
fi
"${PODMAN[@]}" images -qa --no-trunc > "$WORK/images.before"
start=$(now)
made_image=1
if ! "${PODMAN[@]}" build --pull=never --format docker "${LIMITS[@]}" "${secret[@]}" \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$IMAGE" . 2>&1 | tee "$WORK/build.log" |
    grep --line-buffered -E '^(\[[0-9]+/[0-9]+\] )?(STEP|COMMIT)'; then
  tail -30 "$WORK/build.log"
  die "build failed"
fi
TIMES[build]=$(since "$start")

# ---- the image's own promises ------------------------------------------------------------------
"${PODMAN[@]}" image inspect "$IMAGE" > "$WORK/inspect.json"
"$PY" - "$WORK/inspect.json" "$CONTAINER_PORT" "$HEALTH_PATH" "$APP_UID" "$CACHE_VOLUME" "$OUTPUTS_VOLUME" <<'EOF'
import json, sys
image = json.load(open(sys.argv[1]))[0]
config = image["Config"]
port, health, uid, *volumes = sys.argv[2:]
problems = []
if f"{port}/tcp" not in (config.get("ExposedPorts") or {}):
    problems.append(f"port {port} not exposed: {config.get('ExposedPorts')}")
if config.get("User") != f"{uid}:{uid}":
    problems.append(f"user is {config.get('User')!r}, not {uid}:{uid}")
if sorted(config.get("Volumes") or {}) != sorted(volumes):
    problems.append(f"volumes are {sorted(config.get('Volumes') or {})}, not {sorted(volumes)}")
# Docker keeps the health check in Config; podman 4 reports it beside Config.
test = (config.get("Healthcheck") or image.get("Healthcheck") or {}).get("Test") or []
if not test or test[0] != "CMD" or health not in test:
    problems.append(f"healthcheck {test} is not an exec-form check of {health}")
for problem in problems:
    print(f"[smoke] image config: {problem}")
sys.exit(1 if problems else 0)
EOF
say "image config: port $CONTAINER_PORT, user $APP_UID:$APP_UID, volumes $CACHE_VOLUME $OUTPUTS_VOLUME, exec-form healthcheck on $HEALTH_PATH"
# shellcheck disable=SC2016  # $p belongs to the container's shell
found=$(in_image 'for p in /run/secrets/ca_bundle /src /usr/bin/gcc /usr/bin/cc; do [ -e "$p" ] && echo "$p"; done; echo checked')
[ "$found" = "checked" ] || die "in the final image but should not be: ${found%checked}"
say "not in the final image: the CA bundle secret, the builder's files, compilers"

# ---- the same file outside the container --------------------------------------------------------
start=$(now)
unset_seaco=()
while IFS= read -r name; do unset_seaco+=(-u "$name"); done < <(compgen -e | grep '^SEACO_' || true)
env "${unset_seaco[@]}" SEACO_CACHE_DIR="$WORK/outside-cache" \
  "$PY" -m asr transcribe "${MODEL_FLAGS[@]}" --json --quiet "$AUDIO" > "$WORK/outside.json"
"$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))[0]["text"])' "$WORK/outside.json" \
  > "$WORK/expected.txt"
TIMES[outside]=$(since "$start")
say "outside the container (fresh random:tiny, own cache): $(tr -d '\n' < "$WORK/expected.txt" | head -c 60)... ($(tr -d '\n' < "$WORK/expected.txt" | wc -m) chars)"

# ---- run --------------------------------------------------------------------------------------
HOST_PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
API_KEY=smoke-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
UI_AUTH=smoke:$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
mkdir -p "$WORK/outputs"
chown "$APP_UID:$APP_UID" "$WORK/outputs"  # a bind mount must be writable by the image's user
for volume in "$VOLUME" "$LARGE_VOLUME"; do
  pm volume create "$volume" >/dev/null
  made_volumes+=("$volume")
done

start_container() {  # start_container LABEL VOLUME FLAGS...: runs, waits for health, logs the time
  local label=$1 volume=$2 t0 code=""
  shift 2
  t0=$(now)
  pm run -d --name "$CONTAINER" "${LIMITS[@]}" -p "127.0.0.1:$HOST_PORT:$CONTAINER_PORT" \
    -v "$volume:$CACHE_VOLUME" -v "$WORK/outputs:$OUTPUTS_VOLUME" \
    -e "SEACO_SERVER_API_KEYS=$API_KEY" -e "SEACO_SERVER_UI_AUTH=$UI_AUTH" "$IMAGE" "$@" >/dev/null
  made_container=1
  for _ in $(seq 1 1200); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HOST_PORT$HEALTH_PATH" || true)
    [ "$code" = 200 ] && break
    if [ "$(pm inspect -f '{{.State.Running}}' "$CONTAINER")" != true ]; then
      pm logs "$CONTAINER" 2>&1 | tail -30
      die "container exited before $HEALTH_PATH answered"
    fi
    sleep 0.5
  done
  [ "$code" = 200 ] || die "$HEALTH_PATH did not answer 200 within 10 minutes"
  TIMES[$label]=$(since "$t0")
  say "$label: $HEALTH_PATH answered 200 after ${TIMES[$label]} s"
}

remove_container() {  # remove_container LOGFILE: keeps its log, stops it (timed), removes it
  pm logs "$CONTAINER" > "$1" 2>&1
  local t0
  t0=$(now)
  pm stop -t 20 "$CONTAINER" >/dev/null
  TIMES[stop]=$(since "$t0")
  pm rm "$CONTAINER" >/dev/null
  made_container=""
}

check_texts() {
  "$PY" docker/smoke_client.py --url "http://127.0.0.1:$HOST_PORT" --audio "$AUDIO" \
    --expected "$WORK/expected.txt" --api-key "$API_KEY" --ui-auth "$UI_AUTH"
}

generated() { grep -c 'first use only' "$1" || true; }
gen_span() {  # seconds from the first "building ... first use only" line to the last "generated" line
  "$PY" - "$1" <<'EOF'
import re, sys
from datetime import datetime
stamps = {"building": [], "generated": []}
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    match = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ \S+: (building|generated) ", line)
    if match:
        stamps[match.group(2)].append(datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f"))
print(f"{(max(stamps['generated']) - min(stamps['building'])).total_seconds():.1f}"
      if stamps["building"] and stamps["generated"] else "0.0")
EOF
}

start_container tiny_empty_cache "$VOLUME" "${MODEL_FLAGS[@]}"
pm healthcheck run "$CONTAINER" >/dev/null || die "the image's HEALTHCHECK failed"
say "the image's HEALTHCHECK passes (podman healthcheck run)"
uid=$(pm exec "$CONTAINER" id -u)
host_users=$(pm top "$CONTAINER" huser | tail -n +2 | sort -u | tr '\n' ' ')
[ "$uid" = "$APP_UID" ] && [ "$uid" != 0 ] || die "container user is $uid, not $APP_UID"
[ "$host_users" = "$APP_UID " ] || die "container processes run as host users: $host_users"
say "container user: uid $uid (not root); its processes on the host: uid $host_users"

check_texts
code=$(curl -s -o /dev/null -w '%{http_code}' -F "file=@$AUDIO" -F model=seaco-paraformer \
  "http://127.0.0.1:$HOST_PORT/v1/audio/transcriptions")
[ "$code" = 401 ] || die "the API answered $code without a key, not 401"
say "the API refuses a request without the key (401)"

# The command line inside the container writes into the outputs volume as the image's user.
pm cp "$AUDIO" "$CONTAINER:/tmp/smoke.wav"
pm exec "$CONTAINER" python -m asr transcribe "${MODEL_FLAGS[@]}" --quiet --format txt \
  --output-dir "$OUTPUTS_VOLUME" /tmp/smoke.wav >/dev/null
[ -f "$WORK/outputs/smoke.txt" ] || die "python -m asr transcribe wrote nothing to $OUTPUTS_VOLUME"
[ "$(stat -c %u "$WORK/outputs/smoke.txt")" = "$APP_UID" ] || die "smoke.txt is not owned by $APP_UID"
[ "$(tr -d '\n' < "$WORK/outputs/smoke.txt")" = "$(tr -d '\n' < "$WORK/expected.txt")" ] ||
  die "the container's command line gave other text than outside"
say "python -m asr transcribe in the container wrote smoke.txt to $OUTPUTS_VOLUME (uid $APP_UID), same text"
remove_container "$WORK/tiny1.log"
say "stopping took ${TIMES[stop]} s (tini hands SIGTERM to Python)"

# ---- new containers on the same cache volume ----------------------------------------------------
start_container tiny_same_volume "$VOLUME" "${MODEL_FLAGS[@]}"
check_texts  # the models read back from the volume give the same text
remove_container "$WORK/tiny2.log"
say "random:tiny models built: $(generated "$WORK/tiny1.log") on the first start ($(gen_span "$WORK/tiny1.log") s), $(generated "$WORK/tiny2.log") on the second"
[ "$(generated "$WORK/tiny1.log")" -gt 0 ] && [ "$(generated "$WORK/tiny2.log")" = 0 ] ||
  die "the cache volume was not reused"

start_container large_empty_cache "$LARGE_VOLUME" "${LARGE_FLAGS[@]}"
remove_container "$WORK/large1.log"
start_container large_same_volume "$LARGE_VOLUME" "${LARGE_FLAGS[@]}"
remove_container "$WORK/large2.log"
say "random:large models built: $(generated "$WORK/large1.log") on the first start ($(gen_span "$WORK/large1.log") s), $(generated "$WORK/large2.log") on the second"
[ "$(generated "$WORK/large1.log")" -gt 0 ] && [ "$(generated "$WORK/large2.log")" = 0 ] ||
  die "the cache volume was not reused"
if awk -v a="${TIMES[large_same_volume]}" -v b="${TIMES[large_empty_cache]}" 'BEGIN { exit !(a < b) }'; then
  say "second start on the same volume was faster: ${TIMES[large_same_volume]} s against ${TIMES[large_empty_cache]} s"
else
  say "WARNING: second start was not faster (${TIMES[large_same_volume]} s against ${TIMES[large_empty_cache]} s): a busy machine?"
fi

# ---- sizes and times ----------------------------------------------------------------------------
size=$(pm image inspect "$IMAGE" --format '{{.Size}}')
base_size=$(pm image inspect "$BASE_IMAGE" --format '{{.Size}}')
say "image size: $((size / 1000000)) MB ($(awk -v s="$size" 'BEGIN { printf "%.2f", s / 2^30 }') GiB); base image $((base_size / 1000000)) MB"
say "inside the image (MB):"
in_image '
  du -sm /opt/venv /app /usr 2>/dev/null
  cd /opt/venv/lib/python3*/site-packages && du -sm nvidia torch triton funasr gradio modelscope scipy \
    av av.libs transformers numpy numpy.libs sympy 2>/dev/null | sort -rn' | sed 's/^/[smoke]   /'
say "times (s): tools ${TIMES[tools]}, base ${TIMES[base]}, build ${TIMES[build]}, outside run ${TIMES[outside]}"
say "to /health (s): random:tiny ${TIMES[tiny_empty_cache]} (empty cache volume), ${TIMES[tiny_same_volume]} (same volume); random:large ${TIMES[large_empty_cache]} (empty), ${TIMES[large_same_volume]} (same volume)"
say "PASSED ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
