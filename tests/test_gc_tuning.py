"""The collector's tuning for a host's process (engine.gc_tuning), in a process of its own."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from engine.config import HostConfig
from engine.gc_tuning import tune_gc

_PROBE = """
import gc, json, sys, weakref
from engine.gc_tuning import tune_gc
class Node:
    pass
before = gc.get_threshold()
node = Node()
node.self = node  # a cycle, unreachable once the name goes: collected before the freeze, not frozen
cycle = weakref.ref(node)
del node
tune_gc(int(sys.argv[1]))
print(json.dumps({"before": before, "after": gc.get_threshold(), "frozen": gc.get_freeze_count(),
                  "cycle_freed": cycle() is None}))
"""


def _probe(young: int) -> dict:
    done = subprocess.run([sys.executable, "-c", _PROBE, str(young)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_a_host_process_collects_young_objects_less_often_and_freezes_what_it_started_with():
    seen = _probe(50_000)
    assert seen["after"] == [50_000, *seen["before"][1:]]
    assert seen["frozen"] > 1_000  # the interpreter's and the imports' objects
    assert seen["cycle_freed"], "garbage was frozen with the rest"


def test_zero_leaves_the_interpreter_as_it_was():
    seen = _probe(0)
    assert seen["after"] == seen["before"] and seen["frozen"] == 0


def test_a_negative_threshold_is_refused_by_the_config_and_the_function():
    with pytest.raises(ValueError, match="gc_young"):
        HostConfig(gc_young=-1)
    with pytest.raises(ValueError, match="young"):
        tune_gc(-5)


def test_the_setting_reaches_the_hosts_config_and_refuses_a_negative(monkeypatch):
    from pydantic import ValidationError

    from serve.settings import Settings

    assert Settings().host_config().gc_young == HostConfig().gc_young
    monkeypatch.setenv("ARENA_GC_YOUNG", "0")
    assert Settings().host_config().gc_young == 0
    monkeypatch.setenv("ARENA_GC_YOUNG", "-1")
    with pytest.raises(ValidationError, match="gc_young"):
        Settings()
