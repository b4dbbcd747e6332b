"""Sequence id and frame number from a frame's file name.

Default rule: the last run of digits in the file stem is the frame number; everything before it,
minus trailing '_' or '-', is the sequence id: `seq001_000123.png` -> ('seq001', 123),
`run7-frame0042_raw.tif` -> ('run7-frame', 42), `0042.png` -> ('', 42). A name without digits is an
independent frame: (None, None).

A custom pattern is a Python regular expression searched in the stem, with a named group `frame`
and optionally a named group `sequence`, e.g. `(?P<sequence>run\\d+)_t(?P<frame>\\d+)`.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

from rheed.errors import UserError

DEFAULT_PATTERN = r'^(?P<sequence>.*?)[_-]*(?P<frame>\d+)\D*$'


def compile_pattern(pattern: str | re.Pattern | None) -> re.Pattern:
    """Compiles a frame-name pattern; UserError when it is invalid or lacks the `frame` group."""
    if pattern is None:
        pattern = DEFAULT_PATTERN
    if isinstance(pattern, re.Pattern):
        regex = pattern
    else:
        try:
            regex = re.compile(pattern)
        except re.error as e:
            raise UserError(f"invalid --pattern {pattern!r}: {e}") from None
    if 'frame' not in regex.groupindex:
        raise UserError(f"--pattern {regex.pattern!r} needs a named group (?P<frame>...) for the frame number")
    return regex


def parse_sequence_frame(name: str | os.PathLike, pattern: str | re.Pattern | None = None
                         ) -> tuple[str | None, int | None]:
    """(sequence, frame) parsed from the stem of `name`; (None, None) when the pattern does not match."""
    regex = compile_pattern(pattern)
    stem = Path(name).stem
    match = regex.search(stem)
    if match is None or match.group('frame') is None:
        return None, None
    try:
        frame = int(match.group('frame'))
    except ValueError:
        return None, None
    sequence = match.groupdict().get('sequence')
    sequence = '' if sequence is None else sequence.rstrip('_-')
    return sequence, frame


def count_sequences(names: Iterable[str | os.PathLike], pattern: str | re.Pattern | None = None) -> int:
    """How many growth runs the frames come from: distinct sequence ids; a name without a frame number is a
    run of its own."""
    regex = compile_pattern(pattern)
    keys = set()
    for name in names:
        sequence, frame = parse_sequence_frame(name, regex)
        keys.add(('run', sequence) if frame is not None else ('frame', str(name)))
    return len(keys)


def sort_by_frame(paths: Iterable[str | os.PathLike], pattern: str | re.Pattern | None = None) -> list:
    """Sorts by (sequence, frame, name); names without a frame number come last, by name."""
    regex = compile_pattern(pattern)

    def key(path):
        sequence, frame = parse_sequence_frame(path, regex)
        return (frame is None, sequence or '', frame if frame is not None else 0, str(path))

    return sorted(paths, key=key)
