"""The inputs of a batch run as one list of local paths, whatever way they were given.

``maskops detect`` takes paths, ``file://`` URIs and list files (``--from-list``: one path or URI
per line, ``#`` comments and blank lines skipped, relative paths read from the list's folder). Both
engines (local threads, Ray) resolve their inputs here, so they see the same files in the same
order. Remote URIs (``http(s)://``, ``s3://`` ...) are refused with the reason: images are read
from a file system every worker can see.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote, urlparse


class InputError(ValueError):
    """An input that names no readable location (unsupported URI scheme, unreadable list file)."""


def resolve_input(raw: str, base: Path | None = None) -> Path:
    """One input as a local path: a plain path, or a ``file://`` URI (``file:///abs/path``).

    Args:
        raw: what the user gave.
        base: folder that relative paths are read from (a list file's folder); ``None``: as given.

    Raises:
        InputError: a URI with another scheme, or a ``file://`` URI naming another host.
    """
    text = raw.strip()
    if "://" in text:
        parsed = urlparse(text)
        scheme = parsed.scheme.lower()
        if scheme != "file":
            raise InputError(
                f"{raw}: {scheme}:// URIs are not supported (only local paths and file:// URIs); "
                "copy the images to a folder every worker can read"
            )
        if parsed.netloc not in ("", "localhost"):
            raise InputError(
                f"{raw}: a file:// URI must name a local path (file:///path), not host {parsed.netloc!r}"
            )
        return Path(unquote(parsed.path))
    path = Path(text)
    if base is not None and not path.is_absolute():
        return base / path
    return path


def read_list(path: Path) -> list[Path]:
    """The inputs named in a list file: one path or ``file://`` URI per line.

    Raises:
        InputError: the file cannot be read, or a line is an unsupported URI (with its line number).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the input list ({exc})") from exc
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        try:
            out.append(resolve_input(item, base=path.parent))
        except InputError as exc:
            raise InputError(f"{path}, line {lineno}: {exc}") from exc
    return out


def resolve_inputs(raw: Iterable[str], lists: Iterable[Path] = ()) -> list[Path]:
    """Paths and URIs given on the command line, then the entries of each list file, in order."""
    out = [resolve_input(r) for r in raw]
    for lst in lists:
        out.extend(read_list(lst))
    return out
