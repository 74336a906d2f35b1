"""Where a model directory comes from: `random:SIZE` (generated), a local folder, or ModelScope.

A hub id that is neither cached nor reachable fails within seconds with a message that says what
to do, instead of hanging in retries.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

from asr.models import ModelLoadError
from asr.models.random_weights.base import RandomBuild, RandomBuilds, is_random_spec

log = logging.getLogger(__name__)

MODELSCOPE_HOST = ("modelscope.cn", 443)


def _hub_reachable(timeout_s: float = 5.0) -> bool:
    try:
        socket.create_connection(MODELSCOPE_HOST, timeout=timeout_s).close()
        return True
    except OSError:
        return False


def download_from_modelscope(model_id: str, advice: str, label: str = "model") -> Path:
    """The cached copy of `model_id`, else a download; `advice` says what to set instead when
    neither is possible, and `label` names the kind of model in messages."""
    # deliberate lazy import: modelscope is slow to import and only a hub id needs it
    from modelscope.hub.snapshot_download import snapshot_download

    try:
        return Path(snapshot_download(model_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached yet: any failure means "go download"
        pass
    if not _hub_reachable():
        raise ModelLoadError(
            f"{label} '{model_id}' is not in the ModelScope cache and modelscope.cn cannot be "
            f"reached, so it cannot be downloaded. {advice}"
        )
    log.info("downloading %s from ModelScope (first run only)", model_id)
    try:
        return Path(snapshot_download(model_id))
    except Exception as exc:  # noqa: BLE001 - modelscope raises many types
        raise ModelLoadError(f"downloading {label} '{model_id}' from ModelScope failed: {exc}. "
                             f"{advice}") from exc


def resolve_model_dir(spec: str, cache_dir: Path, build: RandomBuild | RandomBuilds, advice: str,
                      label: str = "model") -> Path:
    """The directory of a model given as `random:SIZE`, a local directory or a ModelScope id.

    `build` generates a `random:` spec into `cache_dir/models`; `advice` tells a user who cannot
    download the model what to set instead; `label` names the kind of model in messages."""
    if is_random_spec(spec):
        try:
            return build.ensure(spec, cache_dir / "models")
        except ValueError as exc:
            raise ModelLoadError(str(exc)) from None
    local = Path(spec).expanduser()
    if local.is_dir():
        missing = [n for n in ("config.yaml", "model.pt") if not (local / n).is_file()]
        if missing:
            raise ModelLoadError(f"{label} directory {local} lacks {', '.join(missing)}")
        return local.resolve()
    if local.exists() or spec.startswith((".", "/", "~")):
        raise ModelLoadError(f"{label} path {local} is not a directory")
    return download_from_modelscope(spec, advice, label)
