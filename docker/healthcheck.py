"""The image's HEALTHCHECK: exit 0 when the server answers GET PATH with HTTP 200, else 1.

    python docker/healthcheck.py /health

The port is read as the server reads it (config.yaml, then SEACO_SERVER_PORT), so moving the
server with SEACO_SERVER_PORT moves the check with it instead of reporting a healthy server as
dead. Standard library and the settings module only: it runs every 30 s and must stay cheap.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asr.settings import SettingsError, load_settings  # noqa: E402 - needs the path above

TIMEOUT_S = 8.0


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].startswith("/"):
        print("usage: healthcheck.py /PATH", file=sys.stderr)
        return 1
    try:
        port = load_settings().server.port
    except SettingsError as exc:  # the server cannot have started with these settings either
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    url = f"http://127.0.0.1:{port}{argv[0]}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            ok = response.status == 200
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    print(f"{'healthy' if ok else 'unhealthy'}: {url}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
