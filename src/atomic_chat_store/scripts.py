"""The Lua scripts of ``lua/``: found, read once, their includes put in, their SHA1 computed.

A line ``-- @include NAME`` in a script is replaced by ``lua/includes/NAME.lua`` (BullMQ's way):
the checks every script makes are written once. The stores send ``EVALSHA`` themselves rather
than through redis-py's ``Script``: a ``NOSCRIPT`` reply is part of the store's retry rule, which
then loads every script in one transaction (the server has all or none of them, so a later
transaction of the store cannot find some and miss others, which would split it) and sends the
operation again by its source (``EVAL`` loads the script as it runs it: a ``SCRIPT FLUSH``
cannot come in between, as it can between ``SCRIPT LOAD`` and ``EVALSHA``).
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from .errors import ChatStoreError

_INCLUDE = re.compile(r"^-- @include (\w+)$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: str  # includes put in: what Redis runs
    sha: str


def lua_dir() -> Traversable:
    """``atomic_chat_store/lua`` inside an installed wheel, else the checkout's ``lua/``."""
    packaged = resources.files("atomic_chat_store") / "lua"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "lua"
    if checkout.is_dir():
        return checkout
    raise ChatStoreError(f"the Lua scripts are missing: neither {packaged} nor {checkout} exists")


def expand_includes(text: str, includes: Traversable) -> str:
    def include(match: re.Match[str]) -> str:
        part = includes / f"{match.group(1)}.lua"
        if not part.is_file():
            raise ChatStoreError(f"lua/includes/{match.group(1)}.lua is missing")
        return part.read_text(encoding="utf-8").rstrip("\n")

    return _INCLUDE.sub(include, text)


@functools.cache
def scripts() -> dict[str, Script]:
    """Each script by name (``append`` for ``lua/append.lua``), ready to send."""
    folder = lua_dir()
    found = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".lua"):
            name = entry.name.removesuffix(".lua")
            source = expand_includes(entry.read_text(encoding="utf-8"), folder / "includes")
            found[name] = Script(name, source, hashlib.sha1(source.encode()).hexdigest())
    return found
