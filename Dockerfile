# syntax=docker/dockerfile:1
# The web UI and the OpenAI-compatible API on one port, as an image (docs/docker.md):
#   docker build -t seaco-webui .
#   docker run --gpus all -p 7860:7860 -v seaco-cache:/cache -e SEACO_SERVER_API_KEYS=KEY seaco-webui
# The same image runs on a CPU-only host: torch from PyPI is the CUDA build and carries its own
# CUDA runtime, so only the host's driver (via the NVIDIA container toolkit) is needed for a GPU.

# Debian bookworm: its python3 is 3.11, the version the pinned dependency set is verified on.
# Hosts that cannot pull it can build the same base locally (docker/build-base.sh).
ARG BASE_IMAGE=debian:bookworm-slim

# ---- builder: a venv with the pinned dependencies, and the app byte-compiled ------------------
FROM ${BASE_IMAGE} AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Debian's package versions are not pinned: the base image's release fixes them, and a pin
# would break the build at the next security update.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
WORKDIR /src
# Only pyproject.toml first, so a code change does not reinstall gigabytes of dependencies.
COPY pyproject.toml ./
# Behind a TLS-inspecting proxy pip needs the proxy's CA bundle: pass it as a build secret,
#   docker build --secret id=ca_bundle,src=/etc/ssl/certs/ca-certificates.crt .
# It is mounted for this step only and never lands in a layer. Without the secret pip uses its
# own certificate store.
RUN --mount=type=secret,id=ca_bundle,required=false \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && /opt/venv/bin/python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > requirements.txt \
 && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -r requirements.txt
COPY . /app
RUN /opt/venv/bin/python -m compileall -q /app

# ---- runtime: Python, the venv and the app; no compilers, no pip cache ------------------------
FROM ${BASE_IMAGE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# A fixed numeric id, so volume ownership and `docker run --user` are predictable.
ARG APP_UID=10001
# tini as PID 1 passes `docker stop`'s SIGTERM on to Python (PID 1 ignores it otherwise).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid "${APP_UID}" seaco \
 && useradd --uid "${APP_UID}" --gid "${APP_UID}" --home-dir /var/lib/seaco --create-home \
      --shell /usr/sbin/nologin seaco \
 && mkdir -p /cache /outputs \
 && chown "${APP_UID}:${APP_UID}" /cache /outputs
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
WORKDIR /app
# Settings come from SEACO_* variables (asr/settings.py). Caches live in the /cache volume:
# generated models, the memory model and ModelScope's downloads survive a new container.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/seaco \
    SEACO_CACHE_DIR=/cache/seaco \
    MODELSCOPE_CACHE=/cache/modelscope \
    HF_HOME=/cache/huggingface \
    SEACO_SERVER_PORT=7860 \
    GRADIO_ANALYTICS_ENABLED=False \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER ${APP_UID}:${APP_UID}
EXPOSE 7860
VOLUME ["/cache", "/outputs"]
# First start downloads the models (about 1 GB) into /cache, hence the long start period.
HEALTHCHECK --interval=30s --timeout=10s --start-period=600s --retries=3 \
    CMD ["/opt/venv/bin/python", "docker/healthcheck.py", "/health"]
# Arguments after the image name are launch.py flags (--model, --punctuation, --device, ...).
ENTRYPOINT ["tini", "--", "python", "launch.py", "--listen"]
CMD []
