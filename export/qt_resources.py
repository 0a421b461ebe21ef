"""Read the files packed in a Qt resource bundle (`.rcc`), the way some Debian packages ship data.

GCompris (`gcompris-qt-data`) keeps its photographs in such bundles. The format (Qt's
`rcc --binary`, versions 1-3): a `qres` header with the offsets of a tree of entries, their data
and their names; a file's data is stored as is or zlib-compressed behind its 4-byte length.
"""

from __future__ import annotations

import struct
import zlib

from edge.errors import EdgeError

_COMPRESSED, _DIRECTORY, _COMPRESSED_ZSTD = 1, 2, 4


def read_qt_resources(blob: bytes, name: str = "bundle") -> dict[str, bytes]:
    """Every file in a Qt resource bundle, by its path inside it (e.g. `/a/b.webp`).

    Raises:
        EdgeError: the bytes are not a Qt resource bundle this reader knows (`name` says which).
    """
    if blob[:4] != b"qres" or len(blob) < 20:
        raise EdgeError(f"{name} is not a Qt resource bundle (no 'qres' header)")
    version, tree, data, names = struct.unpack(">IIII", blob[4:20])
    if not 1 <= version <= 3:
        raise EdgeError(f"{name}: Qt resource version {version} is not supported (1-3 are)")
    entry_size = 14 if version == 1 else 22  # version 2 added a modification time

    try:
        return _files(blob, tree, data, names, entry_size, name)
    except (struct.error, zlib.error, UnicodeDecodeError) as exc:
        raise EdgeError(f"{name} is a corrupt Qt resource bundle ({exc}): fetch it again") from exc


def _files(
    blob: bytes, tree: int, data: int, names: int, entry_size: int, name: str
) -> dict[str, bytes]:
    """Walk the tree of entries from the root (entry 0) and read every file's data."""

    def name_at(offset: int) -> str:
        (length,) = struct.unpack_from(">H", blob, names + offset)
        start = names + offset + 6  # length, then a hash, then UTF-16 characters
        return blob[start : start + 2 * length].decode("utf-16-be")

    files: dict[str, bytes] = {}
    pending = [(0, "")]
    while pending:
        index, parent = pending.pop()
        offset = tree + index * entry_size
        name_offset, flags = struct.unpack_from(">IH", blob, offset)
        path = parent + "/" + name_at(name_offset) if index else ""
        if flags & _DIRECTORY:
            count, first = struct.unpack_from(">II", blob, offset + 6)
            pending.extend((first + i, path) for i in range(count))
            continue
        if flags & _COMPRESSED_ZSTD:
            raise EdgeError(f"{name}: {path} is zstd-compressed, which this reader does not read")
        (data_offset,) = struct.unpack_from(">I", blob, offset + 10)
        (length,) = struct.unpack_from(">I", blob, data + data_offset)
        payload = blob[data + data_offset + 4 : data + data_offset + 4 + length]
        if len(payload) != length:
            raise struct.error(f"{path} is cut short")
        files[path] = zlib.decompress(payload[4:]) if flags & _COMPRESSED else payload
    return files
