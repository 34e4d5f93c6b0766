"""Tests of the sample generator's API catalogue (trailsight/synth/apis.yaml) and its loader.

The catalogue is data; these tests make sure the file and the code agree: every builder it names exists,
every API that can fail says how, a malformed row is refused with its name in the message, and records built
from it depend on the seed alone.
"""

from __future__ import annotations

import copy
import random
from datetime import date
from typing import Any

import orjson
import pytest
import yaml

from trailsight.resources import package_folder
from trailsight.synth.catalogue import APIS, BUILDER_FACTORIES, BUILDERS, CALLER_GROUPS, api_catalogue
from trailsight.synth.events import _event, _world
from trailsight.synth.world import _Ctx

SECTIONS = ("apis", "incident_apis")


@pytest.fixture
def catalogue() -> dict[str, Any]:
    """The shipped file as plain data, read independently of the generator's loader."""
    return yaml.safe_load((package_folder("trailsight.synth") / "apis.yaml").read_text())


def rows(catalogue: dict[str, Any]) -> list[dict[str, Any]]:
    return [row for section in SECTIONS for row in catalogue[section]]


def test_every_builder_the_catalogue_names_is_registered(catalogue: dict[str, Any]) -> None:
    for row in rows(catalogue):
        builder = row["builder"]
        if isinstance(builder, str):
            assert builder in BUILDERS, row["name"]
        else:
            ((factory, args),) = builder.items()
            assert factory in BUILDER_FACTORIES and isinstance(args, list), row["name"]


def test_every_api_that_can_fail_names_errors_from_the_errors_table(catalogue: dict[str, Any]) -> None:
    for row in rows(catalogue):
        if row.get("error_rate", 0):
            assert row.get("errors"), f"{row['name']} has an error rate but no errors"
        for name in row.get("errors", ()):
            assert name in catalogue["errors"], (row["name"], name)
    for api in APIS:
        assert 0 <= api.err_rate <= 0.5
        assert bool(api.err_rate) <= bool(api.errors), api.key


def test_catalogue_rows_use_known_fields_callers_and_service_hosts(catalogue: dict[str, Any]) -> None:
    keys = [f"{row['source']}:{row['name']}" for row in rows(catalogue)]
    assert len(keys) == len(set(keys))
    for row in rows(catalogue):
        assert set(row["callers"]) <= CALLER_GROUPS, row["name"]
        hosts = row.get("svc_hosts", [])
        if isinstance(hosts, str):
            assert hosts in catalogue["service_hosts"], row["name"]
        if "svc" in row["callers"]:
            assert hosts, f"{row['name']} is called by AWS services but names none"


def test_loader_keeps_the_files_order_as_popularity_rank(catalogue: dict[str, Any]) -> None:
    apis = api_catalogue(catalogue)
    assert [a.key for a in apis] == [f"{r['source']}:{r['name']}" for r in catalogue["apis"]]
    assert [a.weight for a in apis] == [1 / rank for rank in range(1, len(apis) + 1)]
    assert [a.key for a in apis] == [a.key for a in APIS]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda row, cat: row.update(builder="no_such_builder"), "unknown builder 'no_such_builder'"),
        (lambda row, cat: row.update(builder={"describe_everything": []}), "unknown builder"),
        (lambda row, cat: row.pop("errors"), "has an error rate but no errors"),
        (lambda row, cat: row.update(errors=["no_such_error"]), "not in the errors table"),
        (lambda row, cat: row.update(callers={"robots": 1}), "unknown caller groups"),
        (lambda row, cat: row.update(svc_hosts="nobody"), "not in the service_hosts table"),
        (lambda row, cat: row.pop("svc_hosts"), "names no svc_hosts"),
        (lambda row, cat: row.update(eror_rate=0.1), r"unknown fields \['eror_rate'\]"),
        (lambda row, cat: row.pop("read_only"), r"missing fields \['read_only'\]"),
        (lambda row, cat: cat["apis"].append(copy.deepcopy(row)), "listed twice"),
    ],
)
def test_malformed_catalogue_row_is_refused_with_its_name(catalogue: dict[str, Any], change: Any, message: str) -> None:
    bad = copy.deepcopy(catalogue)
    row = bad["apis"][0]  # AssumeRole: has an error rate, errors and AWS-service callers
    change(row, bad)
    with pytest.raises(ValueError, match=message):
        api_catalogue(bad)


def records_for_every_api(seed: int) -> list[bytes]:
    """One record per API and account that can call it, built with a fresh RNG from ``seed``."""
    world = _world(seed)
    out = []
    for acct in world.accounts:
        for region in ("us-east-1", "eu-west-1"):
            ctx = _Ctx(world, acct, region, date(2024, 5, 9), random.Random(seed))
            for api in APIS:
                entry = world.actor_table.get((acct.index, api.key))
                if entry is None:
                    continue
                for actor in entry[0][:3]:
                    out.append(orjson.dumps(_event(ctx, api, actor, 43_200)))
    return out


def test_every_api_builds_records_that_depend_on_the_seed_alone() -> None:
    first = records_for_every_api(5)
    built = {(r["eventSource"], r["eventName"]) for r in map(orjson.loads, first)}
    assert built == {(a.source, a.name) for a in APIS}  # every builder ran, none raised
    assert records_for_every_api(5) == first
    assert records_for_every_api(6) != first


def test_other_accounts_principals_call_only_apis_marked_cross_account() -> None:
    by_key = {a.key: a for a in APIS}
    called = set()
    for (_, key), (actors, _) in _world(5).actor_table.items():
        if any(a.kind == "AWSAccount" for a in actors):
            assert by_key[key].cross_account, key
            called.add(key)
    assert called == {a.key for a in APIS if a.cross_account}


def test_incident_table_names_catalogue_apis_and_errors_they_can_fail_with(catalogue: dict[str, Any]) -> None:
    incidents = yaml.safe_load((package_folder("trailsight.synth") / "incidents.yaml").read_text())
    rows_by_key = {f"{r['source']}:{r['name']}": r for r in catalogue["apis"]}
    for key in incidents["rate_spike_apis"]:
        assert not rows_by_key[key]["read_only"], key  # a spike of changes, the kind worth an alert
    for burst in incidents["error_bursts"]:
        assert burst["error"] in rows_by_key[burst["api"]]["errors"], burst
