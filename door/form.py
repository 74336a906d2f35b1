"""The API's multipart form, read as it arrives: the file part goes straight to a temporary file
(written off the event loop, a block at a time), every other field is bounded, and the file's
limit is enforced on the bytes counted so far, so a too-large upload is refused the moment it
passes the limit, whether or not the client declared a length.

Starlette's own `request.form()` spools the whole body first and leaves the size check to the
caller, after the fact; FastAPI's declared `File()`/`Form()` parameters do the same before the
endpoint even runs. Hence this reader (python-multipart's push parser, which Starlette also uses).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from python_multipart.multipart import MultipartParser, parse_options_header

FLUSH_BYTES = 2**20  # file data is handed to a worker thread in blocks of this size
MAX_FIELD_BYTES = 64 * 2**10  # a text field (prompt, hotwords, ...)
# Fields that carry data rather than text: OpenAI's known_speaker_references[] are data URLs of
# 2-10 s clips (a 10 s 16-bit WAV is about 430 KB in base64); at most MAX_FIELD_VALUES of each.
FIELD_BYTES = {"known_speaker_references[]": 2**20, "known_speaker_references": 2**20}
MAX_FIELD_VALUES = 8
MAX_FIELDS = 64
MAX_HEADER_BYTES = 8 * 2**10  # one part's headers
_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,15}$")


class FormError(Exception):
    """The form breaks a rule; `status` is the HTTP answer (400 or 413), `param` the field."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


@dataclass
class UploadedFile:
    path: Path
    filename: str | None
    size: int


@dataclass
class Form:
    """The fields (every value of each name, in order) and the one file, already on disk."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    file: UploadedFile | None = None

    def get(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[0] if values else None

    def getlist(self, name: str) -> list[str]:
        return list(self.fields.get(name, []))

    def discard(self) -> None:
        """Remove the temporary file (safe to call twice)."""
        if self.file is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.file.path)


class _Reader:
    """python-multipart's callbacks for one request; the async side drains what they gather."""

    def __init__(self, file_field: str, max_file_bytes: int):
        self.file_field, self.max_file_bytes = file_field, max_file_bytes
        self.form = Form()
        self.error: FormError | None = None
        self.finished = False
        self.pending = bytearray()  # file data not yet written
        self.handle: int | None = None  # the temporary file's descriptor
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._header_bytes = 0
        self._name: str | None = None
        self._is_file = False
        self._value = bytearray()
        self._field_count = 0

    def callbacks(self) -> dict:
        return {"on_part_begin": self._part_begin, "on_header_field": self._header_field,
                "on_header_value": self._header_value_part, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished, "on_part_data": self._part_data,
                "on_part_end": self._part_end, "on_end": self._end}

    def _fail(self, error: FormError) -> None:
        if self.error is None:
            self.error = error

    def _part_begin(self) -> None:
        self._headers, self._header_bytes = {}, 0
        self._name, self._is_file, self._value = None, False, bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_name += data[start:end]

    def _header_value_part(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._header_value += data[start:end]

    def _count_header(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_HEADER_BYTES:
            self._fail(FormError(400, "a form part's headers are too long"))

    def _header_end(self) -> None:
        self._headers[bytes(self._header_name).lower()] = bytes(self._header_value)
        self._header_name, self._header_value = bytearray(), bytearray()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name")
        if name is None:
            self._fail(FormError(400, "a form part has no name"))
            return
        self._name = name.decode("utf-8", "replace")
        self._is_file = b"filename" in options
        if not self._is_file:
            self._field_count += 1
            if self._field_count > MAX_FIELDS:
                self._fail(FormError(400, f"the form has more than {MAX_FIELDS} fields"))
            return
        if self._name != self.file_field:
            self._fail(FormError(400, f"only the '{self.file_field}' field may hold a file", self._name))
        elif self.form.file is not None:
            self._fail(FormError(400, f"send one file in '{self.file_field}'", self.file_field))
        else:
            filename = options[b"filename"].decode("utf-8", "replace")
            suffix = PurePath(filename).suffix
            self.handle, path = tempfile.mkstemp(prefix="seaco-api-",
                                                 suffix=suffix if _SUFFIX.match(suffix) else "")
            self.form.file = UploadedFile(Path(path), filename or None, 0)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self.error is not None or self._name is None:
            return
        if self._is_file:
            if self.handle is None:
                return
            upload = self.form.file
            upload.size += end - start
            if upload.size > self.max_file_bytes:
                self._fail(FormError(413, f"the file is larger than the server's limit of "
                                          f"{self.max_file_bytes // 2**20} MB (server.max_file_size_mb)",
                                     "file", "file_too_large"))
                return
            self.pending += data[start:end]
        else:
            self._value += data[start:end]
            limit = FIELD_BYTES.get(self._name, MAX_FIELD_BYTES)
            if len(self._value) > limit:
                self._fail(FormError(400, f"the field '{self._name}' is longer than "
                                          f"{limit // 1024} KB", self._name))

    def _part_end(self) -> None:
        if self.error is not None or self._name is None or self._is_file:
            return
        try:
            value = bytes(self._value).decode("utf-8")
        except UnicodeDecodeError:
            self._fail(FormError(400, f"the field '{self._name}' is not UTF-8 text", self._name))
            return
        values = self.form.fields.setdefault(self._name, [])
        if self._name in FIELD_BYTES and len(values) >= MAX_FIELD_VALUES:
            self._fail(FormError(400, f"at most {MAX_FIELD_VALUES} values of '{self._name}'", self._name))
            return
        values.append(value)

    def _end(self) -> None:
        self.finished = True


async def read_form(chunks: AsyncIterator[bytes], content_type: str, max_file_bytes: int,
                    file_field: str = "file") -> Form:
    """Parse a multipart body from `chunks` (Starlette's `request.stream()`); FormError on any
    broken rule. The caller owns the returned form's file (`Form.discard`)."""
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise FormError(400, "send the audio as multipart/form-data (a 'file' field)", "file")
    reader = _Reader(file_field, max_file_bytes)
    parser = MultipartParser(boundary, reader.callbacks())
    loop = asyncio.get_running_loop()
    try:
        async for chunk in chunks:
            try:
                parser.write(chunk)
            except Exception as exc:  # noqa: BLE001 - python-multipart's own parse errors
                raise FormError(400, f"could not read the multipart form: {exc}") from None
            if reader.error is not None:
                raise reader.error
            if len(reader.pending) >= FLUSH_BYTES:
                await _flush(loop, reader)
            if reader.finished:
                break
        if not reader.finished:
            raise FormError(400, "the multipart form ended before its closing boundary")
        await _flush(loop, reader)
    except BaseException:
        await loop.run_in_executor(None, _close_and_remove, reader)
        raise
    await loop.run_in_executor(None, _close, reader)
    return reader.form


async def _flush(loop: asyncio.AbstractEventLoop, reader: _Reader) -> None:
    if reader.pending and reader.handle is not None:
        block, reader.pending = bytes(reader.pending), bytearray()
        await loop.run_in_executor(None, _write_all, reader.handle, block)


def _write_all(handle: int, block: bytes) -> None:
    view = memoryview(block)
    while view:
        view = view[os.write(handle, view):]


def _close(reader: _Reader) -> None:
    if reader.handle is not None:
        os.close(reader.handle)
        reader.handle = None


def _close_and_remove(reader: _Reader) -> None:
    _close(reader)
    reader.form.discard()
