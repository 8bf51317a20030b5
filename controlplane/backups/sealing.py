"""Sealing: compression, authenticated chunked encryption and SHA-256, streamed in constant memory.

A sealed file is a header, then frames of at most CHUNK plaintext bytes each:

    header  = MAGIC | key id (16 ASCII hex) | compression (1 byte) | nonce prefix (8 bytes)
    frame   = length (4 bytes, big-endian) | AES-256-GCM(ciphertext + tag)

Each frame's nonce is the prefix plus the frame number; its associated data is the header, the
binding (which backup and which artefact the file belongs to, see `binding()`) and a final-frame
flag. So frames cannot be reordered, dropped, or moved between files, a whole file cannot be
swapped in from another backup or passed off as another artefact, and a file cut short is detected
because its last frame is not flagged final (a final, empty frame always ends the file).
Plaintext is never handed on before its frame's tag has been checked.

Decompression is streamed with a bounded output per step (OUTPUT_STEP), so a frame of highly
compressible data (a WAL bundle of nearly empty segments) never expands in memory at once.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"MGBAK1"
CHUNK = 1 << 20
KEY_ID_LENGTH = 16
HEADER_LENGTH = len(MAGIC) + KEY_ID_LENGTH + 1 + 8
COMPRESSIONS = {"none": 0, "zstd": 1}
FINAL, MORE = b"\x01", b"\x00"
OUTPUT_STEP = 1 << 20  # the most plaintext unseal() holds from one decompression step


class BackupIntegrityError(Exception):
    """The sealed data is not what was written: altered, cut short, or sealed under another key."""


class UnknownKeyError(BackupIntegrityError):
    pass


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"mailgoat-backup-key:" + key).hexdigest()[:KEY_ID_LENGTH]


def parse_key(text: str, name: str) -> bytes:
    """A 32-byte key given as base64 (standard or URL-safe) or 64 hex digits."""
    text = text.strip()
    candidates = []
    if len(text) == 64:
        try:
            candidates.append(bytes.fromhex(text))
        except ValueError:
            pass
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            candidates.append(decode(text + "=" * (-len(text) % 4)))
        except (binascii.Error, ValueError):
            pass
    for key in candidates:
        if len(key) == 32:
            return key
    raise ValueError(f"{name} must be 32 random bytes as base64 or hex "
                     "(for example: python -c 'import secrets, base64; print(base64.b64encode(secrets.token_bytes(32)).decode())')")


class Keyring:
    """The current key (seals new backups) and previous ones (still open old backups)."""

    def __init__(self, current: bytes, previous: Iterable[bytes] = ()):
        self.current = current
        self.current_id = key_id(current)
        self._keys = {key_id(k): k for k in (*previous, current)}

    def key(self, wanted: str) -> bytes:
        try:
            return self._keys[wanted]
        except KeyError:
            raise UnknownKeyError(
                f"sealed with key {wanted}, which is neither BACKUP_ENCRYPTION_KEY ({self.current_id}) "
                "nor one of BACKUP_ENCRYPTION_KEYS_PREVIOUS") from None


def keyring(settings) -> Keyring:
    """The keys BACKUP_ENCRYPTION_KEY and BACKUP_ENCRYPTION_KEYS_PREVIOUS hold."""
    return Keyring(settings.backup_encryption_key, settings.backup_encryption_keys_previous)


@dataclass
class SealResult:
    """Filled in as the sealed stream is consumed; complete once it is exhausted."""

    key_id: str
    compression: str
    plain_bytes: int = 0
    sealed_bytes: int = 0
    plain_sha256: str = ""
    sealed_sha256: str = ""
    _plain: "hashlib._Hash" = field(default_factory=hashlib.sha256, repr=False)
    _sealed: "hashlib._Hash" = field(default_factory=hashlib.sha256, repr=False)


def binding(backup: str, artefact: str) -> bytes:
    """The associated data that ties a sealed file to one artefact of one backup."""
    return b"mailgoat-backup\0" + backup.encode() + b"\0" + artefact.encode()


def _nonce(prefix: bytes, number: int) -> bytes:
    return prefix + struct.pack(">I", number)


def seal(plaintext: Iterable[bytes], keyring: Keyring, compression: str = "zstd",
         bound_to: bytes = b"") -> tuple[Iterator[bytes], SealResult]:
    """Sealed bytes for `plaintext`, and the result (sizes and hashes) they fill in as they are read.

    `bound_to` (see `binding()`) must be given again to unseal: it is authenticated, not stored.
    """
    result = SealResult(keyring.current_id, compression)
    return _seal(plaintext, keyring, result, bound_to), result


def _seal(plaintext: Iterable[bytes], keyring: Keyring, result: SealResult, bound_to: bytes) -> Iterator[bytes]:
    aead = AESGCM(keyring.current)
    prefix = os.urandom(8)
    header = MAGIC + keyring.current_id.encode() + bytes([COMPRESSIONS[result.compression]]) + prefix
    compressor = _compressor(result.compression)
    number = 0

    def frame(data: bytes, flag: bytes) -> bytes:
        nonlocal number
        sealed = aead.encrypt(_nonce(prefix, number), data, header + bound_to + flag)
        number += 1
        out = struct.pack(">I", len(sealed)) + sealed
        result._sealed.update(out)
        result.sealed_bytes += len(out)
        return out

    result._sealed.update(header)
    result.sealed_bytes += len(header)
    yield header
    pending = bytearray()
    for block in plaintext:
        if not block:
            continue
        result._plain.update(block)
        result.plain_bytes += len(block)
        pending += compressor.compress(block) if compressor else block
        while len(pending) >= CHUNK:
            yield frame(bytes(pending[:CHUNK]), MORE)
            del pending[:CHUNK]
    if compressor:
        pending += compressor.flush()
    while len(pending) > CHUNK:
        yield frame(bytes(pending[:CHUNK]), MORE)
        del pending[:CHUNK]
    if pending:
        yield frame(bytes(pending), MORE)
    yield frame(b"", FINAL)
    result.plain_sha256 = result._plain.hexdigest()
    result.sealed_sha256 = result._sealed.hexdigest()


def _compressor(compression: str):
    if compression == "none":
        return None
    import zstandard

    # Level 3 with worker threads: on par with the disk, unlike zlib's level 6.
    return zstandard.ZstdCompressor(level=3, threads=-1).compressobj()


class _Reader:
    """Exact-size reads over an iterator of blocks."""

    def __init__(self, blocks: Iterable[bytes]):
        self._blocks = iter(blocks)
        self._buffer = bytearray()
        self.consumed = 0

    def read(self, size: int) -> bytes:
        while len(self._buffer) < size:
            block = next(self._blocks, None)
            if block is None:
                break
            self._buffer += block
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        self.consumed += len(out)
        return out

    def at_end(self) -> bool:
        return not self.read(1)


def unseal(sealed: Iterable[bytes], keyring: Keyring, expect_plain_sha256: str | None = None,
           expect_sealed_sha256: str | None = None, bound_to: bytes = b"") -> Iterator[bytes]:
    """Plaintext from sealed bytes, each block only after its tag checked, none over OUTPUT_STEP.

    Raises BackupIntegrityError for any alteration, a cut, trailing data, an unknown key, a file
    bound to another backup or artefact than `bound_to`, or (once the end is reached) a hash that
    differs from the one recorded at backup time. A caller that must not act on partial data
    writes the blocks somewhere private and uses them only after the iterator is exhausted
    without an error.
    """
    sealed_hash = hashlib.sha256()
    plain_hash = hashlib.sha256()

    def hashing(blocks):
        for block in blocks:
            sealed_hash.update(block)
            yield block

    reader = _Reader(hashing(sealed))
    header = reader.read(HEADER_LENGTH)
    if len(header) < HEADER_LENGTH or not header.startswith(MAGIC):
        raise BackupIntegrityError("not a sealed MailGoat backup (bad header)")
    wanted = header[len(MAGIC):len(MAGIC) + KEY_ID_LENGTH].decode("ascii", "replace")
    compression_code = header[len(MAGIC) + KEY_ID_LENGTH]
    names = {code: name for name, code in COMPRESSIONS.items()}
    if compression_code not in names:
        raise BackupIntegrityError(f"unknown compression code {compression_code}")
    frames = _authenticated_frames(reader, AESGCM(keyring.key(wanted)), header, bound_to)
    for plain in _decompressed(frames, names[compression_code]):
        plain_hash.update(plain)
        yield plain
    if expect_plain_sha256 and plain_hash.hexdigest() != expect_plain_sha256:
        raise BackupIntegrityError("plaintext SHA-256 differs from the one recorded at backup time")
    if expect_sealed_sha256 and sealed_hash.hexdigest() != expect_sealed_sha256:
        raise BackupIntegrityError("sealed-file SHA-256 differs from the one recorded at backup time")


def _authenticated_frames(reader: _Reader, aead: AESGCM, header: bytes, bound_to: bytes) -> Iterator[bytes]:
    """Each frame's content once its tag checked, up to the final frame; then the end is checked."""
    prefix = header[-8:]
    number = 0
    while True:
        length_bytes = reader.read(4)
        if len(length_bytes) < 4:
            raise BackupIntegrityError(f"cut short after {reader.consumed} bytes: the final frame is missing")
        (length,) = struct.unpack(">I", length_bytes)
        if length < 16 or length > CHUNK + 16:
            raise BackupIntegrityError(f"frame {number} has an impossible length ({length}): the file was altered")
        sealed_frame = reader.read(length)
        if len(sealed_frame) < length:
            raise BackupIntegrityError(f"cut short inside frame {number}")
        data, flag = _open_frame(aead, _nonce(prefix, number), sealed_frame, header + bound_to)
        if data is None:
            raise BackupIntegrityError(f"frame {number} failed authentication: the file was altered, "
                                       "or it belongs to another backup or artefact")
        number += 1
        if flag == FINAL:
            break
        if data:
            yield data
    if not reader.at_end():
        raise BackupIntegrityError("data follows the final frame: the file was altered")


def _open_frame(aead: AESGCM, nonce: bytes, sealed_frame: bytes, associated: bytes) -> tuple[bytes | None, bytes]:
    for flag in (MORE, FINAL):
        try:
            return aead.decrypt(nonce, sealed_frame, associated + flag), flag
        except InvalidTag:
            continue
    return None, MORE


class _FrameSource:
    """The authenticated frames as a file for zstd's stream reader (one frame per read)."""

    def __init__(self, frames: Iterator[bytes]):
        self._frames = frames

    def read(self, size: int = -1) -> bytes:
        return next(self._frames, b"")


def _decompressed(frames: Iterator[bytes], compression: str, step: int = OUTPUT_STEP) -> Iterator[bytes]:
    """Plaintext in blocks of at most `step` bytes, however much one frame expands.

    zstd's stream reader stops at the end of the compressed frame; the sealed frames after it (the
    final, empty one) are still read, so the checks at the end of the file run. The compressed
    stream as a whole is authenticated (no frame can be dropped or cut), and the plaintext SHA-256
    is compared at the end, so a stream that ends early cannot pass.
    """
    if compression == "none":
        yield from frames
        return
    import zstandard

    with zstandard.ZstdDecompressor().stream_reader(_FrameSource(frames), read_size=CHUNK, closefd=False) as stream:
        try:
            while block := stream.read(step):
                yield block
        except zstandard.ZstdError as exc:
            raise BackupIntegrityError(f"the compressed stream is damaged: {exc}") from None
    if next(frames, None) is not None:
        raise BackupIntegrityError("data follows the compressed stream: the file was altered")
