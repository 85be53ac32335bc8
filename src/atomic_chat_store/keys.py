"""Where a conversation lives in Redis, and where its companions live: key names, free of I/O.

A conversation is the list at ``namespace + chat key``, exactly where LlamaIndex's store keeps
it. Its record (op ids, version) and any other companion key is named after it:
``<list key> 0xFF "acs:" <name>``, plus, when the list key has no Cluster hash tag, two bytes
chosen so that the companion hashes to the list's slot. So a companion

- is in the same Cluster slot whatever the chat key, braces included (a script may touch both);
- starts with the list key, so an ACL key pattern such as ``~chat:*`` covers it;
- can never be a chat key: 0xFF never occurs in UTF-8, and chat keys holding that byte (possible
  only through surrogate escapes) are refused.

Chat keys are ``str``. A name that is not UTF-8 (written by another program) is handed out by
``get_keys`` with its undecodable bytes as lone surrogates (Python's ``surrogateescape``, as
``os.fsdecode`` does), and such a name given back reaches the same key.
"""

from __future__ import annotations

import functools
from binascii import crc_hqx

from .errors import InvalidKeyError

COMPANION_MARK = b"\xffacs:"
RECORD = b"rec"
CLUSTER_SLOTS = 16384
_OPEN, _CLOSE = ord("{"), ord("}")


def encode_name(text: str, what: str) -> bytes:
    """A key or namespace as the bytes Redis sees; surrogate escapes give back their bytes."""
    try:
        encoded = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise InvalidKeyError(
            f"{what} {text!r} holds a lone surrogate that stands for no byte"
        ) from None
    if b"\xff" in encoded:
        raise InvalidKeyError(f"{what} {text!r} holds the byte 0xFF, reserved for the store's keys")
    return encoded


def decode_name(raw: bytes) -> str | None:
    """A key name found by SCAN as a chat key, or None for one of the store's companions."""
    if b"\xff" in raw:
        return None
    return raw.decode("utf-8", "surrogateescape")


def hash_tag(key: bytes) -> bytes | None:
    """The part of ``key`` Redis Cluster hashes when it is not the whole key: between the first
    ``{`` and the first ``}`` after it, when that is not empty."""
    start = key.find(b"{")
    if start < 0:
        return None
    end = key.find(b"}", start + 1)
    if end <= start + 1:
        return None
    return key[start + 1 : end]


def key_slot(key: bytes) -> int:
    """The Cluster slot of ``key`` (CRC16/XMODEM, as Redis and redis-py compute it)."""
    tag = hash_tag(key)
    return crc_hqx(key if tag is None else tag, 0) % CLUSTER_SLOTS


def companion_key(key: bytes, name: bytes) -> bytes:
    """The key ``name`` beside ``key``, in the same Cluster slot."""
    base = key + COMPANION_MARK + name
    if hash_tag(key) is not None:
        return base  # ``key``'s tag comes first in ``base`` too
    # Untagged, ``key`` hashes whole; so does ``base`` plus any bytes without braces (nothing
    # after can open or close a tag: see hash_tag). Two such bytes reach any slot.
    return base + _bytes_to_slot(base, key_slot(key))


@functools.lru_cache(maxsize=4096)
def record_key(key: bytes) -> bytes:
    """The record of the conversation at ``key`` (cached: computed for every write)."""
    return companion_key(key, RECORD)


def _bytes_to_slot(prefix: bytes, slot: int) -> bytes:
    # CRC16/XMODEM is linear over GF(2): crc(prefix + x) = crc(x) ^ crc(b"\0\0" after prefix),
    # and crc over two bytes is a bijection, so the two bytes that give a wanted CRC are found
    # by one table look-up. A slot is 14 bits: four CRCs give it; use the first two bytes
    # without a brace (no two bytes found: lengthen the prefix, which changes every candidate).
    for extra in range(16):
        start = prefix + b"-" * extra
        shifted = crc_hqx(b"\0\0", crc_hqx(start, 0))
        for high in range(4):
            candidate = _two_bytes_with_crc()[(high * CLUSTER_SLOTS + slot) ^ shifted]
            if _OPEN not in candidate and _CLOSE not in candidate:
                return b"-" * extra + candidate
    raise AssertionError(f"no suffix reaches slot {slot}")  # pragma: no cover - (1.6 %)^64


@functools.cache
def _two_bytes_with_crc() -> list[bytes]:
    """For each 16-bit CRC, the two bytes whose CRC16/XMODEM (from 0) it is."""
    table = [b""] * 65536
    for value in range(65536):
        two = value.to_bytes(2, "big")
        table[crc_hqx(two, 0)] = two
    return table
