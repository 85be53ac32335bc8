"""The Lua scripts ship inside the wheel, and the example walks through every operation."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

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
    scripts = {p.name for p in (ROOT / "lua").glob("*.lua")}
    assert scripts and {f"atomic_chat_store/lua/{name}" for name in scripts} <= names
    assert "atomic_chat_store/py.typed" in names


def test_every_script_opens_with_its_contract():
    for script in (ROOT / "lua").glob("*.lua"):
        text = script.read_text()
        assert text.startswith("#!lua\n--[[\n"), script.name
        header = text.split("]]", 1)[0]
        for part in ("KEYS[1]", "Returns", "Errors", "Cost"):
            assert part in header, (script.name, part)
        assert "local rcall = redis.call" in text
        assert "'KEYS'" not in text and '"KEYS"' not in text


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
    assert redis_client.keys("walkthrough:*") == []
    assert redis_client.get("unrelated") == b"kept"
