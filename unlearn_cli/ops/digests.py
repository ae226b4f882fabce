"""Stable digests: of files, of record IDs, and seeds derived from a seed and a role."""

from __future__ import annotations

import hashlib
import os
import zlib


def file_sha256(path: str | os.PathLike) -> str:
    """Streaming sha256 hex digest of a file's bytes (constant memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_or_none(path: str | os.PathLike) -> str | None:
    """The file's sha256, or None when it cannot be read (missing, a directory, no permission)."""
    try:
        return file_sha256(path)
    except OSError:
        return None


def derive_seed(seed: int, role: str, *index: int) -> int:
    """A stable 31-bit seed per (seed, role, index...): SISA constituents and slices, attack models."""
    import numpy as np  # lazily: the ledger and the ids reader use this module and stay numpy-free

    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(role.encode()), *map(int, index)])
    return int(state.generate_state(1)[0] & 0x7FFFFFFF)


def id_digest(record_id: str) -> str:
    """Hex sha256 of one ID: lets lineage refer to a record without storing it."""
    return hashlib.sha256(record_id.encode("utf-8")).hexdigest()
