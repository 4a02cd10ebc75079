"""Shared test configuration: hypothesis profiles, and a guard against unpickling."""

from __future__ import annotations

import os
import pickle
from typing import Any

import cloudpickle
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def no_unpickling_here(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Make every unpickling entry point fail in this process (children are unaffected)."""
    parent = os.getpid()

    def refuse(real: Any) -> Any:
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if os.getpid() == parent:
                raise AssertionError("the scheduler process unpickled something")
            return real(*args, **kwargs)

        return guarded

    for module in (pickle, cloudpickle):
        monkeypatch.setattr(module, "loads", refuse(module.loads))
        monkeypatch.setattr(module, "load", refuse(module.load))
    monkeypatch.setattr(pickle, "Unpickler", refuse(pickle.Unpickler))
    return monkeypatch
