"""Arena as a Serve application builder, for Serve config files (``import_path: serve.application:app``).

``serve deploy serve/config.yaml`` calls ``app`` with the config's ``args``: they are
``Settings`` fields and override the ``ARENA_*`` variables of the process that builds
the application, which is where addresses and secrets belong.
"""

from __future__ import annotations

from typing import Any

from ray.serve import Application

from serve.app import build
from serve.settings import Settings

__all__ = ["app"]


def app(args: dict[str, Any]) -> Application:
    return build(Settings(**args))
