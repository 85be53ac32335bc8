"""The Lua scripts ship inside the wheel, and the example walks through every operation."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from atomic_chat_store.scripts import scripts

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_ships_every_lua_script(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True,
        timeout=300,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("atomic_chat_store-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / "lua").rglob("*.lua")}
    assert "lua/includes/prelude.lua" in shipped
    assert {f"atomic_chat_store/{name}" for name in shipped} <= names
    assert "atomic_chat_store/py.typed" in names


def test_every_script_opens_with_its_contract():
    sources = scripts()
    assert set(sources) == {path.stem for path in (ROOT / "lua").glob("*.lua")}
    for script in (ROOT / "lua").glob("*.lua"):
        text = script.read_text()
        assert re.match(r"#!lua( flags=[\w,-]+)?\n--\[\[\n", text), script.name
        header = text.split("]]", 1)[0]
        for part in ("KEYS[1]", "KEYS[2]", "ARGV[1..7]", "Returns", "Errors", "Cost"):
            assert part in header, (script.name, part)
        # The shared prelude (ARGV prefix, checks, record) comes first, once.
        assert text.count("-- @include prelude") == 1, script.name
        source = sources[script.stem].source
        assert source.count("local rcall = redis.call") == 1
        assert "'KEYS'" not in source and '"KEYS"' not in source
    prelude = (ROOT / "lua" / "includes" / "prelude.lua").read_text()
    for part in ("KEYS[1]", "KEYS[2]", *(f"ARGV[{i}]" for i in range(1, 8)), "Errors"):
        assert part in prelude.split("]]", 1)[0], part


def test_the_walkthrough_runs(redis_url, redis_client):
    redis_client.set("unrelated", "kept")
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "walkthrough.py")],
        env={**os.environ, "REDIS_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "delete_message(1) -> removed" in result.stdout
    assert "['first', 'm0', 'm1', 'm2']" in result.stdout
    # No conversation is left; the records of the deleted ones stay for the op id window only.
    left = redis_client.keys("walkthrough:*")
    assert [key for key in left if b"\xff" not in key] == []
    assert all(0 < redis_client.pttl(key) <= 600_000 for key in left)
    assert redis_client.get("unrelated") == b"kept"
