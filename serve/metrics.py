"""The hosts' and the relay's metrics in Prometheus' text format."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = ["render"]

_GAUGES = {
    "active_entities": "Entities in memory",
    "mailbox_depth": "Messages waiting in mailboxes",
    "journal_pending": "Journal entries not yet durable",
    "journal_lag_seconds": "Age of the oldest journal entry not yet durable",
    "journal_last_commit_seconds": "Duration of the last group commit",
    "snapshot_lag_entities": "Entities changed since their last snapshot",
    "snapshot_lag_seconds": "Age of the oldest change not yet in a snapshot",
    "timers": "Timers queued",
}
_COUNTERS = (
    "messages",
    "journal_commits",
    "journal_entries",
    "rejected",
    "handler_failures",
    "overloaded",
    "activations",
    "activation_failures",
    "passivations",
    "snapshots",
    "timers_fired",
    "cpu_seconds",  # the host's process, all its threads
    "gc_full_collections",  # of the collector's oldest generation (engine.gc_tuning)
)


class _HostCollector:
    def __init__(self, hosts: Iterable[dict], dedicated: dict[str, int], relay: dict | None = None) -> None:
        self._hosts = [h for h in hosts if h.get("alive")]
        self._dedicated = dedicated
        self._relay = relay

    def _events(self) -> Iterator[Metric]:
        """The relay's consumers of the domain events (engine.relay)."""
        up = GaugeMetricFamily("arena_relay_up", "Whether the relay answered")
        up.add_metric([], 1.0 if self._relay is not None else 0.0)
        yield up
        if self._relay is None:
            return
        last = GaugeMetricFamily("arena_events_last_position", "Position of the newest event in the outbox")
        last.add_metric([], float(self._relay["last_position"]))
        yield last
        consumers = self._relay["consumers"]
        lag = GaugeMetricFamily(
            "arena_relay_lag_events",
            "Outbox positions between a consumer and the newest event (a reaction's cursor also moves past the"
            " events of other types it has seen by; 0 when it has caught up)",
            labels=["consumer"],
        )
        for name, consumer in sorted(consumers.items()):
            lag.add_metric([name], float(consumer["lag"]))
        yield lag
        for field, help_text in (
            ("events", "Events a consumer read and handled"),
            ("applied", "Events applied by their targets"),
            ("repeated", "Events a target had applied already (a resend)"),
            ("dead_letters", "Events that became dead letters"),
            ("retries", "Deliveries tried again"),
        ):
            family = CounterMetricFamily(
                f"arena_relay_{field}", f"{help_text}, since the relay started", labels=["consumer"]
            )
            for name, consumer in sorted(consumers.items()):
                family.add_metric([name], float(consumer[field]))
            yield family

    def collect(self) -> Iterator[Metric]:
        yield from self._events()
        dedicated = GaugeMetricFamily(
            "arena_dedicated_hosts", "Dedicated hosts alive (a Ray process each), by entity kind", labels=["kind"]
        )
        for kind, count in sorted(self._dedicated.items()):
            dedicated.add_metric([kind], float(count))
        yield dedicated
        for name, help_text in _GAUGES.items():
            yield self._per_host(GaugeMetricFamily(f"arena_host_{name}", help_text, labels=["host"]), name)
        for name in _COUNTERS:
            help_text = f"{name.replace('_', ' ').capitalize()} since the host started"
            yield self._per_host(CounterMetricFamily(f"arena_host_{name}", help_text, labels=["host"]), name)

    def _per_host(self, family: GaugeMetricFamily | CounterMetricFamily, name: str) -> Metric:
        for host in self._hosts:
            family.add_metric([_label(host)], float(host.get(name, 0)))
        return family


def _label(host: dict) -> str:
    dedicated = host.get("dedicated")
    return "/".join(dedicated) if dedicated else f"shared-{host.get('index', 0)}"


def render(
    hosts: Iterable[dict], dedicated: dict[str, int] | None = None, relay: dict | None = None, lake: Path | None = None
) -> bytes:
    """``dedicated``: how many dedicated hosts of each kind are alive in the whole cluster; ``relay``:
    the relay's status (``engine.relay.Relay.status``), None when it did not answer; ``lake``: the
    data lake's folder, whose tables are described from their files' footers (``connectors.lake``)."""
    registry = CollectorRegistry()
    registry.register(_HostCollector(hosts, dedicated or {}, relay))
    if lake is not None and lake.is_dir():
        from connectors.lake import LakeCollector  # pyarrow: only when there is a lake to read

        registry.register(LakeCollector(lake))
    return generate_latest(registry)
