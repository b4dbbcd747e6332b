"""Atomic file writes: write a hidden temporary file next to the target, then rename it over the target.

A crash, SIGKILL or full disk leaves either the old file or the new one, never a half-written one.
"""
import json
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def atomic_write(path, write: Callable[[BinaryIO], None]) -> None:
    """Calls write(f) on a temporary file in path's folder, fsyncs it and renames it to path."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None:
            e.filename = str(path)  # a failed write (e.g. a full disk) names the file it was for
        raise


def write_text_atomic(path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode('utf-8')))


def write_json_atomic(path, data) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + '\n')
