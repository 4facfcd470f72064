"""cluster.yaml passes the checks `ray up` runs before it touches a machine, and serve/config.yaml builds Arena."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from ray._common.utils import import_attr
from ray.autoscaler._private.commands import _bootstrap_config
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.serve import Application
from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
from ray.serve.schema import ServeDeploySchema

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cluster() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


@pytest.fixture
def serve_config() -> dict:
    return yaml.safe_load((ROOT / "serve" / "config.yaml").read_text())


def test_ray_up_accepts_cluster_yaml(cluster):
    prepared = prepare_config(cluster)  # what `ray up` does first: defaults, node types, merged setup commands
    validate_config(prepared)  # Ray's schema and node type checks
    assert prepared["head_node_type"] == "head"
    assert set(prepared["available_node_types"]) == {"head", "cpu_worker"}


def test_only_cpu_workers_offer_the_resource_that_entity_hosts_ask_for(cluster, serve_config):
    (app,) = serve_config["applications"]
    resource = app["args"]["host_resource"]
    types = cluster["available_node_types"]
    assert types["cpu_worker"]["resources"][resource] > 0
    assert resource not in types["head"]["resources"]


def test_the_head_keeps_the_gcs_in_an_external_redis_and_deploys_the_serve_config(cluster):
    head = " ".join(cluster["head_start_ray_commands"])
    assert "RAY_REDIS_ADDRESS=" in head and "--redis-password=" in head
    assert "RAY_external_storage_namespace=" in head
    assert "serve deploy ~/arena/serve/config.yaml" in head


def test_the_head_keeps_as_few_records_of_stopped_race_hosts_as_arena_run_does(cluster):
    from serve.ingress import _GCS_BOUNDS

    head = " ".join(cluster["head_start_ray_commands"])
    assert all(f"{name}={value}" in head for name, value in _GCS_BOUNDS.items())


def test_every_file_the_commands_read_is_mounted_or_in_the_checkout(cluster):
    mounts = cluster["file_mounts"]
    assert mounts["~/arena"] == "."
    assert "~/arena.env" in mounts
    assert (ROOT / "pyproject.toml").exists() and (ROOT / "serve" / "config.yaml").exists()


def test_the_on_premise_variant_passes_ray_ups_whole_bootstrap(cluster):
    """docs/cluster.md: provider `local` with the machines' addresses, and no node types (Ray's
    on-premise provider has one of its own). The local provider needs no cloud, so this runs all
    of `ray up` up to the first SSH connection."""
    local = copy.deepcopy(cluster)
    local["provider"] = {"type": "local", "head_ip": "10.0.0.10", "worker_ips": ["10.0.0.11", "10.0.0.12"]}
    for field in ("available_node_types", "head_node_type", "max_workers"):
        del local[field]
    bootstrapped = _bootstrap_config(local, no_config_cache=True)
    assert bootstrapped["head_start_ray_commands"] == cluster["head_start_ray_commands"]


def test_the_serve_config_is_valid_and_builds_arena(serve_config):
    schema = ServeDeploySchema.parse_obj(serve_config)
    for app in schema.applications:
        built = call_user_app_builder_with_args_if_necessary(import_attr(app.import_path), app.args)
        assert isinstance(built, Application)


def test_the_serve_config_refuses_what_settings_do_not_know():
    from serve.application import app

    with pytest.raises(ValueError, match="host_resourse"):
        app({"host_resourse": "arena_host"})
