"""The client half of docker/smoke.sh: transcribe one recording through a running container the
way users call it (the official `openai` client on /v1, `gradio_client` on the UI's endpoint) and
compare both texts with the text the same model gave outside the container.

    python docker/smoke_client.py --url http://127.0.0.1:PORT --audio FILE --expected TEXTFILE \
        --api-key KEY [--ui-auth USER:PASSWORD]

Prints one line per client and exits 1 when any text differs (or a call fails).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def via_openai(url: str, key: str, audio: Path) -> str:
    from openai import OpenAI

    client = OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=120)
    with audio.open("rb") as handle:
        result = client.audio.transcriptions.create(file=(audio.name, handle, "audio/wav"),
                                                    model="seaco-paraformer")
    return result.text


def via_gradio(url: str, key: str, ui_auth: str | None, audio: Path) -> str:
    from gradio_client import Client, handle_file

    auth = tuple(ui_auth.split(":", 1)) if ui_auth else None
    # Both credentials: the UI login where one is configured, and the API key as a bearer token
    # for servers that accept a key on the UI's routes too.
    client = Client(url, auth=auth, headers={"Authorization": f"Bearer {key}"}, verbose=False,
                    analytics_enabled=False)
    text, *_ = client.predict(handle_file(str(audio)), "", 1, api_name="/transcribe_file")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--audio", type=Path, required=True)
    parser.add_argument("--expected", type=Path, required=True, help="file holding the expected text")
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--ui-auth", help="USER:PASSWORD of the UI login, if the server has one")
    args = parser.parse_args(argv)
    expected = args.expected.read_text(encoding="utf-8").strip()
    failed = False
    for name, call in (("openai", lambda: via_openai(args.url, args.api_key, args.audio)),
                       ("gradio_client", lambda: via_gradio(args.url, args.api_key, args.ui_auth,
                                                            args.audio))):
        start = time.perf_counter()
        try:
            text = call().strip()
        except Exception as exc:  # noqa: BLE001 - report any client failure as a failed check
            print(f"[smoke] {name}: FAILED: {type(exc).__name__}: {exc}")
            failed = True
            continue
        same = text == expected
        failed |= not same
        print(f"[smoke] {name}: {'same text as outside' if same else 'DIFFERENT text'} "
              f"({len(text)} chars, {time.perf_counter() - start:.2f} s)")
        if not same:
            print(f"[smoke]   container: {text!r}\n[smoke]   outside:   {expected!r}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
