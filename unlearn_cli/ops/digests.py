"""Stable digests: of files, of record IDs (plain or keyed), and seeds derived from a seed and a role.

Record IDs (e-mail addresses, customer numbers) are never stored raw. A plain
SHA-256 of an ID is a dictionary lookup away from it, so an operator can hand
the tool a ledger key (``--ledger-key FILE`` or the file named by
``UNLEARN_LEDGER_KEY_FILE``): every per-ID and set digest the ledger, the
lineage and SISA metadata record is then HMAC-SHA256 under that key, and the
files record only the key id, ``HMAC(key, "unlearn key id")`` cut to 16 hex
digits, never the key. Without a key the digests are plain SHA-256, as
before (``printf %s ID | sha256sum``).

Key file: its bytes are the key, one trailing line break dropped (so
``openssl rand -hex 32 > key`` works); 16 to 4096 bytes; a regular file.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from unlearn_cli.errors import BadInput, one_line
from unlearn_cli.ops.inputs import open_input, read_prefix

KEY_ENV = "UNLEARN_LEDGER_KEY_FILE"
KEY_MIN_BYTES = 16
KEY_MAX_BYTES = 4096
_KEY_ID_MESSAGE = b"unlearn key id"


def file_sha256(path: str | os.PathLike) -> str:
    """Streaming sha256 hex digest of a file's bytes (constant memory); never blocks on a FIFO."""
    digest = hashlib.sha256()
    with open_input(path, "file") as (fh, _):
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_or_none(path: str | os.PathLike) -> str | None:
    """The file's sha256, or None when it cannot be read (missing, not a regular file, no permission)."""
    try:
        return file_sha256(path)
    except (OSError, BadInput):
        return None


def derive_seed(seed: int, role: str, *index: int) -> int:
    """A stable 31-bit seed per (seed, role, index...): SISA constituents and slices, attack models."""
    import numpy as np  # lazily: the ledger and the ids reader use this module and stay numpy-free

    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(role.encode()), *map(int, index)])
    return int(state.generate_state(1)[0] & 0x7FFFFFFF)


@dataclass(frozen=True)
class LedgerKey:
    """An operator's secret for keyed ID digests; only ``key_id`` is ever written anywhere."""

    secret: bytes
    source: str

    @property
    def key_id(self) -> str:
        return hmac.new(self.secret, _KEY_ID_MESSAGE, hashlib.sha256).hexdigest()[:16]

    def __repr__(self) -> str:  # never show the secret in a traceback or a log
        return f"LedgerKey(key_id={self.key_id}, source={self.source!r})"


def load_key(path: str | os.PathLike, what: str = "--ledger-key") -> LedgerKey:
    """Read a key file through the bounded input layer; a clear BadInput for anything else."""
    where = one_line(f"{what} {os.fsdecode(path)}")
    with open_input(path, "key file") as (fh, _):
        raw = read_prefix(fh, KEY_MAX_BYTES + 3, path, "key file")  # enough to see a key that is too long
    for ending in (b"\r\n", b"\n"):
        if raw.endswith(ending):
            raw = raw[: -len(ending)]
            break
    if len(raw) > KEY_MAX_BYTES:
        raise BadInput(f"{where}: a key file holds at most {KEY_MAX_BYTES} bytes")
    if len(raw) < KEY_MIN_BYTES:
        raise BadInput(f"{where}: the key is {len(raw)} bytes; use at least {KEY_MIN_BYTES} "
                       "(e.g. openssl rand -hex 32 > FILE)")
    return LedgerKey(raw, str(path))


def resolve_key(path: str | os.PathLike | None) -> LedgerKey | None:
    """The ledger key: ``path`` (the option), else the file ``UNLEARN_LEDGER_KEY_FILE`` names, else None."""
    if path is not None:
        return load_key(path)
    env = os.environ.get(KEY_ENV)
    if env:
        return load_key(Path(env), KEY_ENV)
    return None


def key_id_of(key: LedgerKey | None) -> str | None:
    return key.key_id if key is not None else None


def id_digest(record_id: str, key: LedgerKey | None = None) -> str:
    """Hex digest of one ID: HMAC-SHA256 under ``key``, plain SHA-256 without one."""
    data = record_id.encode("utf-8")
    if key is None:
        return hashlib.sha256(data).hexdigest()
    return hmac.new(key.secret, data, hashlib.sha256).hexdigest()


def set_digest(ids: Iterable[str], key: LedgerKey | None = None) -> str:
    """Digest of a set of IDs, independent of order and repeats.

    Without a key it equals ``data.ids.id_set_digest`` (sha256 of the unique
    IDs, sorted by code point, joined with ``\\n``); with one, HMAC-SHA256 of the same bytes.
    """
    data = "\n".join(sorted(set(ids))).encode("utf-8")
    if key is None:
        return hashlib.sha256(data).hexdigest()
    return hmac.new(key.secret, data, hashlib.sha256).hexdigest()


NO_KEY_WARNING = (f"no ledger key (--ledger-key FILE or {KEY_ENV}): the ledger and lineage record plain "
                  "SHA-256 digests of the removed IDs, which anyone with a list of candidate IDs can match")
