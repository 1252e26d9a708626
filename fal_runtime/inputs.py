"""File inputs: what a file-input field accepts, and how each value becomes bytes to send.

A field that takes a file (`image_url`, `image_urls`, fields fal marks as image or file inputs) accepts:

- a `str`: an `http://` or `https://` URL or a `data:` URI, sent as is. Any other string (a local path such as
  `"cat.png"` or `"photos/dog.jpg"`, a bare word, a URL of another scheme such as `s3://`) is refused before anything
  is sent, naming `pathlib.Path("cat.png")`: a local path must be a `pathlib.Path`, so a typo in a URL is never
  silently read from disk, and a path is never sent to fal as if it were a URL. Where fal names presets a field also
  takes (flux-general's `control_method_url="canny"`), the generated type says so: `FileInput | Literal[...]`;
- a `pathlib.Path` (any `os.PathLike`), `bytes` / `bytearray` / `memoryview`, a binary file object, or a PIL image
  (with the `pil` extra installed). Type checkers see the image as `ImageLike`, a protocol a PIL image satisfies,
  so the type of a file input is fully known whether or not Pillow is installed.

A file object is sent from its current position, as httpx and requests send one: what is left of it is what the caller
handed over. One already read to its end (or closed) is an error naming the field, never an upload of 0 bytes; `seek(0)`
first to send it whole. A file whose size `stat` gives as 0 (`/proc` and `/sys` files) is read to find its real size.
A PIL image is sent in its own format when it has a common one, else as PNG, in a mode PNG holds (see `_png_ready`).

Everything but a string is checked when the `Input` model is built (the path is a file, the file object is binary and
has something left to read), so a bad value fails before any network call. At call time the client turns each into a
`Blob` here and either inlines it as a data URI (up to the client's `inline_max_bytes`; 0: never) or uploads it to
fal's storage, then sends the URL.
"""

from __future__ import annotations

import base64
import io
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, Protocol

from pydantic import PlainSerializer, PlainValidator, WithJsonSchema


class ImageLike(Protocol):
    """What the runtime uses of a PIL image (`PIL.Image.Image` satisfies it): a structural type, so that a file
    input's type is fully known to a type checker without Pillow installed. At run time only a real PIL image is
    accepted (`is_pil_image`)."""

    @property
    def mode(self) -> str: ...

    def save(self, fp: IO[bytes], format: str | None = None) -> None: ...

    def getbands(self) -> tuple[str, ...]: ...


if TYPE_CHECKING:
    from typing import TypeAlias

    FileInput: TypeAlias = str | "os.PathLike[str]" | bytes | bytearray | memoryview | IO[bytes] | ImageLike
    """What a file-input field accepts (see the module docstring)."""

URL_PREFIXES = ("http://", "https://", "data:")
"""How a string file input starts (case-insensitively) when it is a URL fal can fetch."""


def is_url(value: str) -> bool:
    """Whether a string file input is a URL fal fetches: http(s) or a data URI, in any case."""
    return value[:8].lower().startswith(URL_PREFIXES)


def presets(examples: Any) -> list[str]:
    """The names a file field's spec gives as examples that are not URLs (flux-general's `control_method_url`:
    `canny`, `depth`, ...): presets fal takes there besides a file. The generator types them (`FileInput |
    Literal[...]`) and the local server accepts them; any other string that is not a URL is refused."""
    found = examples if isinstance(examples, list) else []
    return list(dict.fromkeys(e for e in found if isinstance(e, str) and e and not is_url(e)))


def check_url(value: str) -> str:
    """`value` if it is an http(s) URL or a data URI; else ValueError naming the scheme for a URL fal cannot fetch, and
    `pathlib.Path(value)` for anything else."""
    if is_url(value):
        return value
    shown = value if len(value) <= 120 else value[:117] + "..."
    scheme = value.partition("://")[0] if "://" in value[:32] else ""
    if scheme:
        raise ValueError(
            f"{shown!r} is a {scheme}:// URL, which fal cannot fetch: give an http(s) URL, a data URI, or the file "
            "itself as a pathlib.Path, bytes or a binary file object"
        )
    raise ValueError(
        f"{shown!r} is not a URL (http://, https://) or a data URI, and a string is never read as a local path: "
        f"to send the local file, pass pathlib.Path({shown!r})"
    )


def validate(value: Any) -> Any:
    """Accept a file-input value unchanged, or raise ValueError saying what is accepted (pydantic reports it)."""
    if isinstance(value, str):
        return check_url(value)
    if isinstance(value, (bytes, bytearray, memoryview)) or is_pil_image(value):
        return value
    if isinstance(value, os.PathLike):
        path = Path(value)
        if not path.is_file():
            raise ValueError(f"{str(path)!r} is not a file")
        return value
    if isinstance(value, io.TextIOBase):
        raise ValueError("the file is open in text mode; open it in binary mode ('rb')")
    if callable(getattr(value, "read", None)):
        if getattr(value, "closed", False) is True:
            raise ValueError("the file object is closed")
        position = _exhausted_at(value)
        if position is not None:
            raise ValueError(_at_end(position))
        return value
    raise ValueError(
        "expected a URL or data URI (str), a pathlib.Path, bytes, a binary file object or a PIL image, "
        f"not {type(value).__name__}"
    )


def serialize(value: Any) -> str:
    """A file-input value as JSON: only a URL or data URI. Anything else reaching JSON was never uploaded, and must
    fail loudly rather than send fal a local path's text or a file object's repr."""
    if isinstance(value, str):
        return value
    raise TypeError(
        f"a file input holding {type(value).__name__} cannot be sent as JSON: it must be uploaded first "
        "(the generated call functions do that; `Client.upload` does it by hand)"
    )


if not TYPE_CHECKING:
    # At run time the union is a validator: pydantic cannot build a schema for IO or PIL types, and must not
    # coerce (a str stays a URL, a Path stays a Path until the client reads it).
    FileInput = Annotated[
        Any,
        PlainValidator(validate),
        PlainSerializer(serialize, when_used="json"),
        WithJsonSchema({"type": "string", "format": "uri"}),
    ]


def is_pil_image(value: object) -> bool:
    """Whether `value` is a PIL image, without importing PIL (it is an optional extra)."""
    return any(c.__module__ == "PIL.Image" and c.__name__ == "Image" for c in type(value).__mro__)


def needs_sending(value: Any) -> bool:
    """Whether a validated file-input value must be inlined or uploaded (everything but a URL or data URI)."""
    return not isinstance(value, str)


@dataclass(frozen=True)
class Blob:
    """A file to send: its size, name and content type, and a way to read any byte range of it.

    Ranges (rather than one read) let a multipart upload read its parts concurrently without holding the file.
    """

    size: int
    file_name: str
    content_type: str
    read_range: Callable[[int, int], bytes]  # (offset, length) → bytes

    def read(self) -> bytes:
        return self.read_range(0, self.size)


_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF8", 0, "image/gif"),
    (b"WEBP", 8, "image/webp"),
    (b"ftyp", 4, "video/mp4"),
    (b"WAVE", 8, "audio/wav"),
    (b"ID3", 0, "audio/mpeg"),
    (b"%PDF", 0, "application/pdf"),
)


def sniff(head: bytes) -> str:
    """The content type of bytes without a file name, from their first bytes (octet-stream when unknown)."""
    for magic, offset, content_type in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return content_type
    return "application/octet-stream"


def _named(name: str, head: bytes) -> str:
    import mimetypes  # here, not at import: generated modules import this module

    return mimetypes.guess_type(name)[0] or sniff(head)


def _default_name(content_type: str) -> str:
    import mimetypes

    return "file" + (mimetypes.guess_extension(content_type) or ".bin")


def _bytes_blob(data: bytes, file_name: str | None = None) -> Blob:
    view = memoryview(data)
    content_type = _named(file_name, data[:16]) if file_name else sniff(data[:16])
    if not file_name:
        file_name = _default_name(content_type)
    return Blob(len(data), file_name, content_type, lambda offset, length: bytes(view[offset : offset + length]))


def _path_blob(path: Path) -> Blob:
    def read_range(offset: int, length: int) -> bytes:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read(length)

    size = path.stat().st_size
    if size == 0:  # /proc and /sys files report 0 bytes and still have content: read it to know
        data = path.read_bytes()
        if data:
            return _bytes_blob(data, path.name)
    return Blob(size, path.name, _named(path.name, read_range(0, 16)), read_range)


def _exhausted_at(handle: Any) -> int | None:
    """The position of a seekable file object read to its end (None if it has something left, is empty from its
    start, or cannot tell): sending it would send 0 bytes of a file that is not empty."""
    try:
        if not handle.seekable():
            return None
        start = handle.tell()
        end = handle.seek(0, io.SEEK_END)
        handle.seek(start)
    except (AttributeError, OSError, TypeError, ValueError):
        return None
    return start if isinstance(start, int) and isinstance(end, int) and start > 0 and end <= start else None


def _at_end(position: int) -> str:
    return f"the file object was already read to its end (position {position}): nothing is left to send; seek(0) first"


def _file_blob(handle: IO[bytes]) -> Blob:
    raw_name = getattr(handle, "name", None)
    name = os.path.basename(raw_name) if isinstance(raw_name, str) else None
    seekable = getattr(handle, "seekable", None)
    if not (callable(seekable) and seekable()):
        return _bytes_blob(_read_bytes(handle), name)
    start = handle.tell()
    size = handle.seek(0, io.SEEK_END) - start
    handle.seek(start)
    if size <= 0 and start > 0:  # read to its end since it was validated
        raise ValueError(_at_end(start))
    lock = threading.Lock()  # parts of a multipart upload are read from several threads

    def read_range(offset: int, length: int) -> bytes:
        with lock:
            handle.seek(start + offset)
            return _read_bytes(handle, length)

    head = read_range(0, 16)
    content_type = _named(name, head) if name else sniff(head)
    file_name = name or _default_name(content_type)
    return Blob(size, file_name, content_type, read_range)


def _read_bytes(handle: IO[bytes], length: int = -1) -> bytes:
    data = handle.read(length)
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError("the file object returned text; open it in binary mode ('rb')")
    return bytes(data)


_PIL_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
_PNG_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I;16B"})


def _pil_blob(image: Any) -> Blob:
    """A PIL image encoded in its own format when it has a common one (a JPEG stays a JPEG) and can hold its mode,
    else as PNG."""
    fmt = image.format if image.format in _PIL_FORMATS else "PNG"
    buffer = io.BytesIO()
    if fmt != "PNG":
        try:
            image.save(buffer, format=fmt)
        except (OSError, KeyError, ValueError):  # a mode the format cannot hold (an RGBA image loaded as a JPEG)
            fmt, buffer = "PNG", io.BytesIO()
    if fmt == "PNG":
        _png_ready(image).save(buffer, format=fmt)
    return _bytes_blob(buffer.getvalue(), "image." + ("jpg" if fmt == "JPEG" else fmt.lower()))


def _png_ready(image: Any) -> Any:
    """`image` in a mode PNG holds, converted as a PIL user would before saving: one band of 32-bit integers or floats
    (`I`, `F`, `I;16L`) becomes 8-bit `L` when its values fit 0–255, else 16-bit (clipped to 0–65535); premultiplied
    alpha is undone; CMYK, YCbCr, LAB, HSV and the like become RGB."""
    mode = image.mode
    if mode in _PNG_MODES:
        return image
    if mode in ("RGBa", "PA"):
        return image.convert("RGBA")
    if mode == "La":
        return image.convert("LA")
    if len(image.getbands()) == 1:
        wide = image if mode in ("I", "F") else image.convert("I")  # getextrema refuses the other 16-bit layouts
        low, high = wide.getextrema()
        return wide.convert("L") if low >= 0 and high <= 255 else wide.convert("I").convert("I;16")
    return image.convert("RGB")


def to_blob(value: Any) -> Blob:
    """The `Blob` of a validated file-input value that is not a string."""
    if isinstance(value, os.PathLike):
        return _path_blob(Path(value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _bytes_blob(bytes(value))
    if is_pil_image(value):
        return _pil_blob(value)
    return _file_blob(value)


def data_uri(blob: Blob) -> str:
    return f"data:{blob.content_type};base64,{base64.b64encode(blob.read()).decode('ascii')}"
