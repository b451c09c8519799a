"""Writing output files safely: never a half-written file, never a lost one.

Every file the tool writes goes to a temporary name in the same folder and is renamed over the
destination only once it is complete, so an interrupted run leaves the previous file intact.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from fineprune.errors import InputError


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block succeeds, it atomically becomes `path`.

    If the block raises (or the process is interrupted), the temporary file is removed and `path`
    is left exactly as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(handle)
    tmp = Path(name)
    try:
        yield tmp
        tmp.chmod(0o666 & ~_umask())  # mkstemp makes owner-only files; give what open() would
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def first_line(error: BaseException) -> str:
    """The first line of an exception's message, for one-line error reports."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, what a kept result made from that file records: a result made
    from another version of the file is made again."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def strict_json(value: Any) -> Any:
    """`value` with every NaN or infinite float, at any depth of its lists and dicts, made None:
    strict JSON, which every reader takes (a value not measured is null)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    return value
