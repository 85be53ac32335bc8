"""The Lua scripts of ``lua/``: found, read once, registered with a redis-py client.

redis-py's ``Script`` (and the async client's ``AsyncScript``) already call EVALSHA, load the
script and retry once on NOSCRIPT (after a restart, a failover or SCRIPT FLUSH), and get loaded
before a pipeline runs; nothing here repeats that.
"""

from __future__ import annotations

import functools
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from .errors import ChatStoreError


def lua_dir() -> Traversable:
    """``atomic_chat_store/lua`` inside an installed wheel, else the checkout's ``lua/``."""
    packaged = resources.files("atomic_chat_store") / "lua"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "lua"
    if checkout.is_dir():
        return checkout
    raise ChatStoreError(f"the Lua scripts are missing: neither {packaged} nor {checkout} exists")


@functools.cache
def script_sources() -> dict[str, str]:
    """Each script's text by name (``append`` for ``lua/append.lua``)."""
    return {
        entry.name.removesuffix(".lua"): entry.read_text(encoding="utf-8")
        for entry in lua_dir().iterdir()
        if entry.name.endswith(".lua")
    }


def register_scripts(client: Any) -> dict[str, Any]:
    """One ``Script`` per script, bound to ``client`` (sync, async or cluster)."""
    return {name: client.register_script(source) for name, source in script_sources().items()}
