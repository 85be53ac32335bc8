"""``atomic-chat-store bench``: this store against LlamaIndex's RedisChatStore (the seed) and raw
redis-py commands (the floor), measured side by side. The measuring lives here; the terminal
output lives in ``atomic_chat_store.cli``, the files in ``bench.report``."""

from .model import (
    FLOOR_DEFINITIONS,
    OPERATION_LABELS,
    OPERATIONS,
    SYSTEM_LABELS,
    SYSTEMS,
    BenchConfig,
    BenchReport,
    Cell,
    ConcurrencyResult,
    Target,
)
from .runner import KEY_PREFIX, CleanupWarning, ProgressCallback, remove_prefix, run_bench

__all__ = [
    "FLOOR_DEFINITIONS",
    "KEY_PREFIX",
    "OPERATIONS",
    "OPERATION_LABELS",
    "SYSTEMS",
    "SYSTEM_LABELS",
    "BenchConfig",
    "BenchReport",
    "Cell",
    "CleanupWarning",
    "ConcurrencyResult",
    "ProgressCallback",
    "Target",
    "remove_prefix",
    "run_bench",
]
