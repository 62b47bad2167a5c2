#!/usr/bin/env python3
"""Zip a build directory into a reproducible Lambda deployment package.

Usage: build_zip.py SOURCE_DIR OUTPUT_ZIP

The same input files always give a byte-identical zip: entries are sorted, every timestamp is
fixed (SOURCE_DATE_EPOCH when set, else 1980-01-01), permissions are normalised (0644, or 0755
for executables), and the compression level is fixed. ``__pycache__`` directories and ``*.pyc``
files are left out: they are compiled for the build machine's Python, not the Lambda runtime's.
Standard library only, so it runs wherever the Makefile runs.
"""

from __future__ import annotations

import os
import stat
import sys
import time
import zipfile
from pathlib import Path

EXCLUDED_DIRS = frozenset({"__pycache__"})
EXCLUDED_SUFFIXES = (".pyc", ".pyo")
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can hold


def fixed_date_time() -> tuple[int, int, int, int, int, int]:
    """The timestamp of every entry: SOURCE_DATE_EPOCH (reproducible-builds.org) or 1980-01-01."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if not epoch:
        return ZIP_EPOCH
    stamp = time.gmtime(max(int(epoch), 315532800))  # not before 1980-01-01
    return (stamp.tm_year, stamp.tm_mon, stamp.tm_mday, stamp.tm_hour, stamp.tm_min, stamp.tm_sec)


def collect(source: Path) -> list[tuple[str, Path]]:
    """Every file under ``source`` as (archive name, path), sorted by archive name."""
    entries: list[tuple[str, Path]] = []
    for root, dirs, files in os.walk(source):
        dirs[:] = [d for d in dirs if d not in EXCLUDED_DIRS]
        for name in files:
            if name.endswith(EXCLUDED_SUFFIXES):
                continue
            path = Path(root, name)
            entries.append((path.relative_to(source).as_posix(), path))
    entries.sort(key=lambda entry: entry[0])
    return entries


def build_zip(source: Path, output: Path) -> int:
    """Write ``output`` from the files under ``source``; return the number of entries."""
    date_time = fixed_date_time()
    entries = collect(source)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for name, path in entries:
            info = zipfile.ZipInfo(name, date_time=date_time)
            info.compress_type = zipfile.ZIP_DEFLATED
            executable = path.stat().st_mode & stat.S_IXUSR
            info.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
            info.create_system = 3  # Unix, so the permissions above are honoured when unpacked
            archive.writestr(info, path.read_bytes(), compresslevel=9)
    partial.replace(output)
    return len(entries)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    source, output = Path(argv[0]), Path(argv[1])
    if not source.is_dir():
        print(f"build_zip: {source} is not a directory (build it first)", file=sys.stderr)
        return 1
    count = build_zip(source, output)
    size = output.stat().st_size
    print(f"{output}: {count} files, {size / 1_000_000:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
