"""8 threads edit one conversation at random: nothing lost, nothing duplicated, and the final list
is what replaying the scripts in the order the server ran them (as MONITOR saw it) gives."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter

import redis

from atomic_chat_store import ChatMessage, RedisChatStore
from atomic_chat_store.scripts import scripts
from conftest import round_trips

THREADS = 8
OPERATIONS_PER_THREAD = 60
INITIAL = 50


def test_concurrent_edits_match_the_servers_order(request, redis_url, redis_client, monitored):
    # MONITOR logs an EVALSHA even when it fails with NOSCRIPT: load every script first, so
    # that each EVALSHA it shows is one that ran.
    for script in scripts().values():
        redis_client.script_load(script.source)
    seed = RedisChatStore.from_url(redis_url)
    request.addfinalizer(seed.close)
    initial = [f"init-{i}" for i in range(INITIAL)]
    seed.set_messages("shared", [ChatMessage(content=t) for t in initial])
    written: list[str] = list(initial)
    removed: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)
    failures: list[BaseException] = []

    def worker(number: int) -> None:
        rng = random.Random(number)
        store = RedisChatStore(redis.Redis.from_url(redis_url))
        store.count("shared")  # connect before the barrier
        try:
            start.wait(timeout=30)
            for step in range(OPERATIONS_PER_THREAD):
                text = f"t{number}-{step}"
                choice = rng.random()
                if choice < 0.35:
                    store.add_message("shared", ChatMessage(content=text), idx=rng.randint(-60, 60))
                    mine = [text]
                elif choice < 0.55:
                    store.add_message("shared", ChatMessage(content=text))
                    mine = [text]
                else:
                    mine = []
                    gone = store.delete_message("shared", rng.randint(0, 60))
                    with lock:
                        if gone is not None:
                            removed.append(gone.content)
                with lock:
                    written.extend(mine)
        except BaseException as error:  # reported below, with the thread's number
            failures.append(error)
        finally:
            store.client.close()

    with monitored() as seen:
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert not failures, failures
    assert not any(thread.is_alive() for thread in threads)

    final = [m.content for m in seed.get_messages("shared")]
    # Nothing lost or duplicated: what was written, less what deletes handed back.
    assert Counter(final) == Counter(written) - Counter(removed)
    assert len(set(final)) == len(final)

    # Replay the scripts in the server's order on a Python list.
    by_sha = {script.sha: name for name, script in scripts().items()}
    model = list(initial)
    replayed = 0
    for command in round_trips(seen):
        if command.name != "EVALSHA" or command.args[3] != b"shared":
            continue
        # EVALSHA sha 2 <list> <record> ARGV: the script's own arguments follow the prefix of 7.
        name, args = by_sha[command.args[1].decode()], command.args[5 + 7 :]
        if name == "append":
            model.extend(json.loads(a)["blocks"][0]["text"] for a in args)
        elif name == "insert":
            model.insert(int(args[0]), json.loads(args[1])["blocks"][0]["text"])
        elif name == "delete_at":
            idx = int(args[0])
            if 0 <= idx < len(model):
                model.pop(idx)
        replayed += 1
    assert replayed == THREADS * OPERATIONS_PER_THREAD
    assert final == model


def test_readers_never_see_a_half_written_replace(make_store, redis_client):
    writer, reader = make_store(), make_store()
    short = [ChatMessage(content=f"s{i}") for i in range(2_000)]
    long = [ChatMessage(content=f"l{i}") for i in range(5_000)]
    writer.set_messages("chat", short)
    seen_lengths: list[int] = []
    reading, done = threading.Event(), threading.Event()

    def read() -> None:
        deadline = time.monotonic() + 60  # bounded even if the writer stalls
        while not done.is_set() and time.monotonic() < deadline:
            seen_lengths.append(reader.count("chat"))
            reading.set()

    thread = threading.Thread(target=read)
    thread.start()
    assert reading.wait(timeout=30)
    reads_before = len(seen_lengths)
    for round_number in range(20):
        writer.set_messages("chat", long if round_number % 2 == 0 else short)
    reads_during = len(seen_lengths) - reads_before
    done.set()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert reads_during >= 10, "the reader did not run while the lists were replaced"
    assert set(seen_lengths) <= {2_000, 5_000}


def test_get_keys_scans_and_never_sends_keys(make_store, redis_client, monitored):
    store = make_store(namespace="ns:")
    for i in range(2_500):
        redis_client.rpush(f"ns:c{i}", "{}")
    store.count("warm")
    with monitored() as seen:
        keys = store.get_keys()
    assert len(keys) == 2_500 and keys[0] == "c0"
    names = {c.name for c in round_trips(seen)}
    assert names == {"SCAN"}
