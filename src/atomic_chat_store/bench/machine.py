"""The machine a run measured on, for the report."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

import redis


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def describe_machine(client: redis.Redis) -> dict[str, Any]:
    server: dict[str, Any] = {}
    try:
        info = client.info("server")
        server = {
            "redis_version": info.get("redis_version"),
            "redis_mode": info.get("redis_mode"),
            "os": info.get("os"),
        }
    except redis.RedisError as error:  # INFO may be forbidden by an ACL
        server = {"redis_version": f"unknown ({error})"}
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "redis_py": redis.__version__,
        "hiredis": _version("hiredis"),
        "pydantic": _version("pydantic"),
        "atomic_chat_store": _version("atomic-chat-store"),
        "llama_index_core": _version("llama-index-core"),
        "seed": _version("llama-index-storage-chat-store-redis"),
        "redis_server": server.get("redis_version"),
        "redis_server_info": server,
    }
