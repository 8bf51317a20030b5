"""The sealed format: round trips, hashes, and every kind of damage refused before use."""
from __future__ import annotations

import hashlib
import os

import pytest

from controlplane.backups.sealing import (CHUNK, OUTPUT_STEP, BackupIntegrityError, Keyring, UnknownKeyError, binding,
                                          key_id, parse_key, seal, unseal)

KEY, OTHER = os.urandom(32), os.urandom(32)


def sealed_bytes(data: bytes, keyring: Keyring, compression: str = "zstd", block: int = 65536):
    stream, result = seal((data[i:i + block] for i in range(0, len(data), block)), keyring, compression)
    return b"".join(stream), result


def opened(blob: bytes, keyring: Keyring, **expect) -> bytes:
    return b"".join(unseal([blob[i:i + 100_000] for i in range(0, len(blob), 100_000)], keyring, **expect))


@pytest.mark.parametrize("compression", ["zstd", "none"])
@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, 3 * CHUNK + 12345])
def test_round_trip_with_both_hashes(size, compression):
    data = os.urandom(size // 2) + b"\0" * (size - size // 2)  # half noise, half compressible
    blob, result = sealed_bytes(data, Keyring(KEY), compression)
    assert result.plain_bytes == size and result.sealed_bytes == len(blob)
    assert result.plain_sha256 == hashlib.sha256(data).hexdigest()
    assert result.sealed_sha256 == hashlib.sha256(blob).hexdigest()
    assert opened(blob, Keyring(KEY), expect_plain_sha256=result.plain_sha256,
                  expect_sealed_sha256=result.sealed_sha256) == data


def test_compressible_data_is_stored_smaller():
    blob, result = sealed_bytes(b"INSERT INTO messages VALUES (1, 'queued');\n" * 50_000, Keyring(KEY))
    assert len(blob) < result.plain_bytes / 20


@pytest.mark.parametrize("position", ["header", "first frame", "middle", "last byte"])
def test_a_flipped_byte_anywhere_is_refused(position):
    data = os.urandom(2 * CHUNK + 500)
    blob, _ = sealed_bytes(data, Keyring(KEY), "none")
    index = {"header": 8, "first frame": 40, "middle": len(blob) // 2, "last byte": len(blob) - 1}[position]
    damaged = bytearray(blob)
    damaged[index] ^= 0x01
    with pytest.raises(BackupIntegrityError):
        opened(bytes(damaged), Keyring(KEY))


@pytest.mark.parametrize("keep", [0, 10, 34, 1000, -1])
def test_a_cut_file_is_refused(keep):
    blob, _ = sealed_bytes(os.urandom(CHUNK + 10), Keyring(KEY))
    with pytest.raises(BackupIntegrityError, match="cut short|bad header|final frame"):
        opened(blob[:keep] if keep >= 0 else blob[:-20], Keyring(KEY))


def test_data_after_the_final_frame_is_refused():
    blob, _ = sealed_bytes(b"hello", Keyring(KEY))
    with pytest.raises(BackupIntegrityError, match="follows the final frame"):
        opened(blob + b"extra", Keyring(KEY))


def test_frames_cannot_be_swapped_between_files():
    first, _ = sealed_bytes(os.urandom(CHUNK + 1), Keyring(KEY), "none")
    second, _ = sealed_bytes(os.urandom(CHUNK + 1), Keyring(KEY), "none")
    header = 6 + 16 + 1 + 8
    spliced = first[:header] + second[header:]
    with pytest.raises(BackupIntegrityError, match="failed authentication"):
        opened(spliced, Keyring(KEY))


def test_a_wrong_key_names_the_key_it_needs():
    blob, _ = sealed_bytes(b"secret rows", Keyring(KEY))
    with pytest.raises(UnknownKeyError, match=key_id(KEY)):
        opened(blob, Keyring(OTHER))


def test_previous_keys_still_open_old_backups():
    blob, _ = sealed_bytes(b"sealed before the rotation", Keyring(KEY))
    assert opened(blob, Keyring(OTHER, previous=[KEY])) == b"sealed before the rotation"
    new_blob, result = sealed_bytes(b"after", Keyring(OTHER, previous=[KEY]))
    assert result.key_id == key_id(OTHER)


def test_a_recorded_hash_that_differs_is_refused():
    blob, result = sealed_bytes(b"data", Keyring(KEY))
    with pytest.raises(BackupIntegrityError, match="plaintext SHA-256"):
        opened(blob, Keyring(KEY), expect_plain_sha256="0" * 64)
    with pytest.raises(BackupIntegrityError, match="sealed-file SHA-256"):
        opened(blob, Keyring(KEY), expect_sealed_sha256="0" * 64)


def test_keys_parse_from_base64_and_hex_and_bad_ones_are_explained():
    import base64

    raw = os.urandom(32)
    assert parse_key(base64.b64encode(raw).decode(), "K") == raw
    assert parse_key(base64.urlsafe_b64encode(raw).decode().rstrip("="), "K") == raw
    assert parse_key(raw.hex(), "K") == raw
    for bad in ("short", base64.b64encode(os.urandom(16)).decode(), "z" * 64):
        with pytest.raises(ValueError, match="32 random bytes"):
            parse_key(bad, "BACKUP_ENCRYPTION_KEY")


def test_a_bomb_like_frame_is_unsealed_in_bounded_blocks():
    """A 1 MiB frame can hold gigabytes of zeros; no block handed on may exceed OUTPUT_STEP."""
    size = 512 << 20  # 512 MiB of zeros: a few dozen KiB sealed, in a single sealed frame
    zeros = bytes(CHUNK)
    stream, result = seal((zeros for _ in range(size // CHUNK)), Keyring(KEY))
    blob = b"".join(stream)
    assert len(blob) < CHUNK  # one frame (and the final one): the old code decompressed it at once
    largest = total = 0
    for block in unseal([blob], Keyring(KEY), expect_plain_sha256=result.plain_sha256):
        largest, total = max(largest, len(block)), total + len(block)
    assert total == size and largest <= OUTPUT_STEP


def test_an_artefact_bound_to_another_backup_is_refused():
    stream, _ = seal([b"rows"], Keyring(KEY), bound_to=binding("20261201T000000Z-full-aaaaaa", "database.dump"))
    blob = b"".join(stream)
    assert opened_bound(blob, binding("20261201T000000Z-full-aaaaaa", "database.dump")) == b"rows"
    for other in (binding("20261201T000000Z-full-bbbbbb", "database.dump"),
                  binding("20261201T000000Z-full-aaaaaa", "globals.sql"), b""):
        with pytest.raises(BackupIntegrityError, match="belongs to another backup or artefact"):
            opened_bound(blob, other)


def opened_bound(blob: bytes, bound_to: bytes) -> bytes:
    return b"".join(unseal([blob], Keyring(KEY), bound_to=bound_to))
