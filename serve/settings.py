"""Arena's one settings object: environment variables with the ``ARENA_`` prefix."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
import secrets
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AnyUrl, Field, SecretStr, TypeAdapter, UrlConstraints, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from engine.config import HostConfig
from engine.gc_tuning import YOUNG

__all__ = ["MqttUrl", "Settings"]

MqttUrl = Annotated[AnyUrl, UrlConstraints(allowed_schemes=["mqtt"], host_required=True, default_port=1883)]
"""One broker: ``mqtt://[user:password@]host[:port]`` (port 1883 when left out)."""

_MQTT_URL: TypeAdapter[AnyUrl] = TypeAdapter(MqttUrl)


def _redacted(url: str) -> str:
    """``url`` without the password in it (settings errors end up in logs)."""
    return re.sub(r"//([^/@:]*):[^@]*@", r"//\1:***@", url)


def _comma_list(value: Any) -> list[Any]:
    """An environment variable's ``a,b,c`` as a list (a list or tuple stays as it is; unset or empty: none)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [] if not value.strip() else [item.strip() for item in value.split(",")]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


class Settings(BaseSettings):
    # Errors name the setting without echoing its value: URLs may carry passwords.
    model_config = SettingsConfigDict(env_prefix="ARENA_", frozen=True, hide_input_in_errors=True)

    database_url: str = Field(
        "sqlite:///data/arena.db",
        description="sqlite:///path (embedded default) or postgresql://user@host:port/db",
    )
    redis_url: str | None = Field(None, description="redis://host:port/db for pub/sub, rate limits and revocation")
    lake: bool = Field(
        True,
        description="write every domain event to the data lake (Parquet, docs/lake.md), and archive each settled"
        " race's raw telemetry there (a race keeps its journal until then)",
    )
    lake_dir: Path | None = Field(None, description="the data lake's folder (default: lake/ under the data folder)")
    nats_url: str | None = Field(
        None,
        description="nats://host:port of a NATS server with JetStream: every domain event is published to the "
        "ARENA_EVENTS stream (subjects arena.events.<kind>.<type>); unset: the engine's outbox only",
    )
    http_host: str = "127.0.0.1"
    http_port: int = Field(8000, ge=1, le=65535)
    namespace: str = Field("arena", description="Ray namespace of the hosts")
    hosts: int = Field(2, ge=1, le=1024, description="shared entity hosts (Ray actors)")
    shards: int = Field(1024, ge=1, description="routing shards; about ten times the most hosts expected")
    host_resource: str | None = Field(
        None, min_length=1, description="custom resource of the Ray nodes that run entity hosts (unset: any node)"
    )
    snapshot_interval: float = Field(5.0, gt=0, description="seconds between write-behind snapshots")
    snapshot_budget: float = Field(
        1_000_000.0, gt=0, description="bytes/s one entity's periodic snapshots may average (a big race's board)"
    )
    snapshot_max_wait: float = Field(60.0, gt=0, description="the longest the budget holds a snapshot back, seconds")
    telemetry_retention_days: int = Field(
        90, ge=1, description="days raw race telemetry stays in the lake before retention deletes it (docs/privacy.md)"
    )
    audit_retention_days: int = Field(365, ge=1, description="days the security audit log of a day is kept")
    retention_interval: float = Field(86_400.0, gt=0, description="seconds between runs of retention under arena run")
    erasure_grace: float = Field(
        7 * 86_400.0, ge=0, description="seconds between DELETE /me and the erasure, while the athlete may cancel it"
    )
    export_link_ttl: float = Field(
        900.0, gt=0, le=86_400, description="seconds a data export's download link works (once) before it is deleted"
    )
    passivate_after: float = Field(600.0, gt=0, description="seconds idle before an entity leaves memory")
    mailbox_capacity: int = Field(10_000, ge=1, description="queued messages per entity before Overloaded")
    race_host_idle: float = Field(
        300.0, gt=0, description="seconds a final or cancelled race's own host stays up idle before it stops"
    )
    race_hosts_max: int = Field(
        100, ge=1, description="race hosts (a Ray process each) alive at once; the next race waits (503)"
    )
    gc_young: int = Field(
        YOUNG,
        ge=0,
        description="container allocations between the collector's young collections in Arena's entity hosts,"
        " relay and API replicas (0: CPython's default of 700; docs/engine.md)",
    )
    jwt_secret: SecretStr | None = Field(
        None, description="signing key of access tokens; generated into data/jwt-secret when unset"
    )
    access_token_ttl: float = Field(900, gt=0, description="seconds an access token lives")
    refresh_token_ttl: float = Field(30 * 86_400, gt=0, description="seconds a refresh token lives unused")
    argon2_time_cost: int = Field(2, ge=1)
    argon2_memory_kib: int = Field(19_456, ge=8, description="argon2id memory per hash (OWASP: 19 MiB)")
    admin_emails: list[str] = Field(
        default_factory=list, description="addresses that get the admin role when they register (JSON list)"
    )
    data_dir: Path = Field(Path("data"), description="where the embedded store and generated secrets live")
    replicas: int = Field(
        default_factory=lambda: 2 if (os.cpu_count() or 1) >= 2 else 1,
        ge=1,
        le=256,
        description="API replicas (Serve deployment gateway); two where there are two cores, so losing one "
        "costs only its requests in flight",
    )
    ingress: Literal["haproxy", "proxy"] = Field(
        "haproxy", description="HTTP in front of the API replicas of a local Ray (docs/ingress.md)"
    )
    haproxy_stats_port: int = Field(
        8404, ge=0, le=65535, description="HAProxy's stats page, on loopback only; 0 (or taken): a free port"
    )
    haproxy_metrics_port: int = Field(
        9101, ge=0, le=65535, description="HAProxy's Prometheus exporter, on loopback only; 0 (or taken): a free port"
    )
    replica_requests: int = Field(
        10_000, ge=1, description="requests (live streams included) one API replica holds at once; then 503"
    )
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = Field(
        ("auto",),
        description="comma-separated networks (CIDR) of proxies whose X-Forwarded-For is believed; 'auto': loopback "
        "when Arena runs its own HAProxy ingress, none otherwise; empty: none",
    )
    operator_token: SecretStr | None = Field(
        None, description="bearer token for /metrics and /health/details (Prometheus, monitoring); unset: none"
    )
    operator_loopback: bool = Field(
        True, description="clients on this machine's loopback may read /metrics and /health/details without a token"
    )
    access_log: bool = Field(False, description="Serve writes a log line per request (costs about 5% of a replica)")
    rate_limit_scale: float = Field(
        1.0, ge=0, description="multiplies every request limit of docs/security.md's table; 0 turns them off"
    )
    rate_limits: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="comma-separated overrides of single limits: policy.account=COUNT/SECONDS, policy.address=off",
    )
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="comma-separated origins (https://app.example) that may call the API from a browser; none: "
        "same-origin only",
    )
    https: bool = Field(False, description="clients reach Arena over HTTPS only: send Strict-Transport-Security")
    spectator_tick: float = Field(1.0, gt=0, le=60, description="seconds between refreshes of a watched race")
    push_workers: int = Field(
        0, ge=0, le=64, description="push processes arena run starts for live race streams (0: none; docs/push.md)"
    )
    push_port: int = Field(8100, ge=1, le=65535, description="the port the push processes share")
    ray_address: str | None = Field(None, description="join this Ray cluster instead of starting a local one")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of the local Ray (default: all)")
    mqtt_url: Annotated[tuple[MqttUrl, ...], NoDecode] = Field(
        (),
        description="the brokers (shards) devices connect to, comma-separated mqtt://host:port; a device's broker is "
        "broker_of(device id, count), so keep the order (docs/mqtt.md)",
    )
    mqtt_password_file: Path | None = Field(None, description="Mosquitto's password file; device credentials go there")
    mqtt_pid_file: Annotated[tuple[Path, ...], NoDecode] = Field(
        (),
        description="comma-separated pid files of the brokers on this machine: each one that exists gets a SIGHUP "
        "after a credential changes",
    )
    mqtt_hub_password: SecretStr | None = Field(None, description="password of the MQTT hub's user arena-hub")
    shop_feed_url: str | None = Field(
        None, description="http(s) URL of the brand's Google Merchant product feed (TSV) that a catalogue sync reads"
    )
    shop_webhook_secret: SecretStr | None = Field(
        None,
        description="HMAC-SHA256 key(s) of the shop's order webhooks, comma-separated while one is rotated; unset: "
        "every webhook is refused",
    )
    shop_click_secret: SecretStr | None = Field(
        None, description="key that signs click ids of links to the shop (default: derived from the JWT secret)"
    )
    shop_click_ttl: float = Field(30 * 86_400, gt=0, description="seconds a click id attributes an order")
    billing_webhook_secret: SecretStr | None = Field(
        None,
        description="HMAC-SHA256 key(s) of the billing provider's subscription webhooks, comma-separated while one "
        "is rotated; unset: every webhook is refused",
    )
    billing_grace_s: float = Field(7 * 86_400, gt=0, description="seconds a past-due subscription keeps its plan")
    webhooks_allow_private: bool = Field(
        False,
        description="outbound webhooks may go to http:// and to loopback, private and link-local addresses (tests, a "
        "local setup); off: https to public addresses only, against SSRF (docs/commerce.md)",
    )
    webhooks_attempts: int = Field(12, ge=1, le=50, description="attempts at an outbound webhook before it is dead")
    webhooks_backoff: float = Field(2.0, gt=0, description="seconds before an outbound webhook's 1st retry (doubling)")
    webhooks_backoff_max: float = Field(900.0, gt=0, description="the longest wait between two attempts, seconds")
    webhooks_timeout: float = Field(10.0, gt=0, le=120, description="seconds one outbound webhook attempt may take")

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if url.startswith("sqlite:///"):
            # Hosts run in Ray worker processes with their own working directory.
            return f"sqlite:///{Path(url.removeprefix('sqlite:///')).resolve()}"
        if not url.startswith(("postgresql://", "postgres://")):
            raise ValueError("ARENA_DATABASE_URL must start with sqlite:///, postgresql:// or postgres://")
        return url

    @field_validator("data_dir", "lake_dir")
    @classmethod
    def _absolute(cls, path: Path | None) -> Path | None:
        # Resolved where the settings are made: Ray workers (the relay, the replicas) have working
        # directories of their own.
        return None if path is None else path.resolve()

    @field_validator("nats_url")
    @classmethod
    def _nats(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("nats://", "tls://")):
            raise ValueError("ARENA_NATS_URL must start with nats:// or tls://")
        return url

    @field_validator("mqtt_url", mode="before")
    @classmethod
    def _brokers(cls, value: Any) -> tuple[AnyUrl, ...]:
        urls: list[AnyUrl] = []
        for n, item in enumerate(_comma_list(value), 1):
            text = str(item).strip()
            where = f"ARENA_MQTT_URL: broker {n} ({_redacted(text)!r}) is not mqtt://[user:password@]host[:port]"
            if not text:
                raise ValueError(f"{where}: it is empty (a stray comma?)")
            try:
                url = _MQTT_URL.validate_python(text)
            except ValidationError as error:
                raise ValueError(f"{where}: {error.errors()[0]['msg']}") from None
            if url.path not in (None, "", "/") or url.query or url.fragment:
                raise ValueError(f"{where}: a broker's address has no path, query or fragment")
            if not url.port:
                raise ValueError(f"{where}: port 0")
            if any((url.host, url.port) == (seen.host, seen.port) for seen in urls):
                raise ValueError(f"ARENA_MQTT_URL names the broker {url.host}:{url.port} twice")
            urls.append(url)
        return tuple(urls)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxies(cls, value: Any) -> tuple[str, ...]:
        items = tuple(str(item).strip() for item in _comma_list(value))
        for item in items:
            if item != "auto":
                try:
                    ipaddress.ip_network(item, strict=False)
                except ValueError:
                    raise ValueError(f"ARENA_TRUSTED_PROXIES: {item!r} is not a network like 10.0.0.0/8") from None
        return items

    def proxy_networks(self) -> tuple[str, ...]:
        """The trusted proxies, with 'auto' resolved: loopback behind Arena's own HAProxy."""
        networks = [item for item in self.trusted_proxies if item != "auto"]
        if "auto" in self.trusted_proxies and self.ingress == "haproxy" and self.ray_address in (None, "local"):
            networks += ["127.0.0.0/8", "::1/128"]
        return tuple(networks)

    @field_validator("rate_limits", mode="before")
    @classmethod
    def _rate_limits(cls, value: Any) -> tuple[str, ...]:
        from serve.throttle import parse_overrides  # late: it loads FastAPI, which the hub and the CLI do without

        items = tuple(str(item).strip() for item in _comma_list(value))
        parse_overrides(items)
        return items

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> tuple[str, ...]:
        origins = tuple(str(item).strip().rstrip("/") for item in _comma_list(value))
        for origin in origins:
            if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:\d{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:\d{1,5})?", origin):
                raise ValueError(
                    f"ARENA_CORS_ORIGINS: {origin!r} is not an origin like https://app.example (no '*', path or query)"
                )
        return origins

    @field_validator("mqtt_pid_file", mode="before")
    @classmethod
    def _pid_files(cls, value: Any) -> tuple[Path, ...]:
        files = _comma_list(value)
        if any(not str(item).strip() for item in files):
            raise ValueError("ARENA_MQTT_PID_FILE is a comma-separated list of files, with no empty one")
        return tuple(Path(item) for item in files)

    def shop_webhook_secrets(self) -> list[str]:
        """The keys any of which may sign a shop webhook (none: refuse them all)."""
        if self.shop_webhook_secret is None:
            return []
        return [key.strip() for key in self.shop_webhook_secret.get_secret_value().split(",") if key.strip()]

    def billing_webhook_secrets(self) -> list[str]:
        """The keys any of which may sign a billing webhook (none: refuse them all)."""
        if self.billing_webhook_secret is None:
            return []
        return [key.strip() for key in self.billing_webhook_secret.get_secret_value().split(",") if key.strip()]

    def opt_out_secret(self) -> str:
        """The key of one-click marketing opt-out links (derived from the JWT secret)."""
        return hmac.new(self.signing_secret().encode(), b"arena marketing opt-out", hashlib.sha256).hexdigest()

    def click_secret(self) -> str:
        if self.shop_click_secret is not None:
            return self.shop_click_secret.get_secret_value()
        return hmac.new(self.signing_secret().encode(), b"arena shop click ids", hashlib.sha256).hexdigest()

    def event_secret(self) -> str:
        """The key of event tickets (check-in codes) and calendar feed tokens: derived from the JWT secret."""
        return hmac.new(self.signing_secret().encode(), b"arena event tokens", hashlib.sha256).hexdigest()

    def signing_secret(self) -> str:
        """The configured secret, or one generated once and kept beside the embedded store."""
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        path = self.data_dir.resolve() / "jwt-secret"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            candidate = path.with_suffix(f".{os.getpid()}")
            candidate.write_text(secrets.token_urlsafe(48))
            candidate.chmod(0o600)
            try:  # link, not rename: if another replica won the race, its secret stays
                os.link(candidate, path)
            except FileExistsError:
                pass
            finally:
                candidate.unlink()
        return path.read_text().strip()

    @property
    def store_name(self) -> str:
        return "sqlite" if self.database_url.startswith("sqlite") else "postgresql"

    def streams(self) -> tuple[tuple[str, str], ...]:
        """Where the relay publishes every domain event besides the engine's own outbox: the lake
        (unless turned off) and NATS JetStream (when configured)."""
        streams = []
        if self.lake:
            streams.append(("connectors.lake:open_lake", str(self.lake_root)))
            streams.append(("connectors.lake:open_race_archive", str(self.lake_root)))
        if self.nats_url:
            streams.append(("connectors.nats_stream:open_stream", self.nats_url))
        streams.append(("serve.outbound:open_outbound", self.webhooks_spec()))  # partners' webhooks (docs/commerce.md)
        streams.append(("serve.erasure:open_eraser", self.eraser_spec()))  # last: after the lake took the batch
        return tuple(streams)

    def webhooks_spec(self) -> str:
        """The outbound webhooks' delivery policy (serve/outbound.py)."""
        from urllib.parse import urlencode

        return urlencode({"attempts": self.webhooks_attempts, "backoff": self.webhooks_backoff,
                          "backoff_max": self.webhooks_backoff_max, "timeout": self.webhooks_timeout,
                          "allow_private": int(self.webhooks_allow_private)})  # fmt: skip

    def eraser_spec(self) -> str:
        """Where the eraser finds what holds data besides the store (connectors/erasure.py)."""
        from urllib.parse import urlencode

        parts = {
            "models": str((self.data_dir / "models" / "recommend").resolve()),
            "files": str((self.data_dir / "exports").resolve()),
            "access_ttl": str(self.access_token_ttl),
        }
        if self.lake:
            parts["lake"] = str(self.lake_root)
        if self.nats_url:
            parts["nats"] = self.nats_url
        if self.redis_url:
            parts["redis"] = self.redis_url
            parts["namespace"] = self.namespace
        if self.mqtt_password_file is not None:
            parts["mqtt"] = str(self.mqtt_password_file.resolve())
            parts["mqtt_pid"] = ",".join(str(p.resolve()) for p in self.mqtt_pid_file)
        return urlencode(parts)

    @property
    def lake_root(self) -> Path:
        """The lake's folder, absolute: the relay runs in a Ray process of its own."""
        return (self.lake_dir or self.data_dir / "lake").resolve()

    def host_config(self) -> HostConfig:
        return HostConfig(
            snapshot_interval=self.snapshot_interval,
            snapshot_budget=self.snapshot_budget,
            snapshot_max_wait=self.snapshot_max_wait,
            passivate_after=self.passivate_after,
            mailbox_capacity=self.mailbox_capacity,
            retire_after=self.race_host_idle,
            gc_young=self.gc_young,
            archived_kinds=("race",) if self.lake else (),  # the lake archives a race's telemetry from its journal
        )
