"""Commands that keep the raw archive: archive, restore, lifecycle rules and retention costs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from trailsight.cli.common import (
    EXIT_PENDING,
    EndOption,
    JsonOption,
    LakeOption,
    PolicyOption,
    SourceOption,
    StartOption,
    _line,
    _plural,
    _show,
    _table,
    app,
    date_range,
    out,
    parse_day,
    problems_listed,
)
from trailsight.retention import archive as archive_module
from trailsight.retention import costs
from trailsight.retention import lifecycle as lifecycle_module
from trailsight.retention import restore as restore_module
from trailsight.retention.policy import DEFAULT_POLICY, load_policy


@app.command()
def archive(
    source: SourceOption,
    lake: LakeOption,
    day: Annotated[str, typer.Option("--date", help="The delivery day to archive, YYYY-MM-DD (UTC).")],
    policy: PolicyOption = None,
    force: Annotated[bool, typer.Option("--force", help="Archive a day still inside keep_as_delivered_days.")] = (
        False),
    as_json: JsonOption = False,
) -> None:
    """Verify a delivery day's raw files against the lake, bundle them per account and region, then delete them.

    Originals are deleted only once every event is in the lake (or its
    quarantine) and the bundle is written and read back with its checksum.
    A day failing verification is left as it is: problems go to stderr, exit 1.
    Running it again resumes an interrupted run; no bundle is written twice.

    Example: trailsight archive --source ./archive --lake ./lake --date 2024-05-01
    """
    result = archive_module.archive_day(source, lake, parse_day(day, "--date"), load_policy(policy), force=force)
    if as_json:
        out.print_json(json.dumps(result.as_dict()))
    else:
        rows = [[g.group, g.status, g.files, g.bundle_bytes, g.storage_class, g.in_lake, g.quarantined]
                for g in result.groups]
        if rows:
            columns = ["group", "status", "files", "bundle bytes", "class", "events in lake", "quarantined"]
            _show(_table(f"archive {result.day}", columns, rows, right=frozenset({2, 3, 5, 6})))
        for group in result.groups:
            for step in group.steps:
                if step.startswith("note:"):
                    _line(f"{group.group}: {step}", error=True)
        _line(f"{result.day} {result.status}: {_plural(result.bundles_written, 'bundle')} written, "
              f"{_plural(result.files_deleted, 'original')} deleted")
    if not result.ok:
        listed = problems_listed(result.problems, Path(f"archive-problems-{result.day}.txt"))
        _line(f"{result.day} failed verification ({_plural(len(result.problems), 'problem')}); nothing was "
              f"written or deleted{listed}", error=True)
        raise typer.Exit(1)


@app.command()
def restore(
    source: SourceOption,
    day: Annotated[str, typer.Option("--date", help="The delivery day to restore, YYYY-MM-DD (UTC).")],
    target: Annotated[str | None, typer.Option("--target", help="Where to put the originals (default: the "
                                               "archive itself, under their own keys).")] = None,
    account: Annotated[list[str] | None, typer.Option("--account", help="Only this account (repeatable).")] = None,
    region: Annotated[list[str] | None, typer.Option("--region", help="Only this region (repeatable).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace files that exist with other contents.")] = (
        False),
    policy: PolicyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Put a day's original raw files back from its bundles, byte for byte.

    Files already in place are left alone. Bundles in GLACIER or DEEP_ARCHIVE
    must be restored by S3 first: the first run asks for it and exits 3; run
    the same command again later.
    Exit codes: 0 restored (or nothing to restore), 1 failed, 3 pending.

    Example: trailsight restore --source ./archive --date 2024-05-01
    """
    parsed = parse_day(day, "--date")
    loaded = load_policy(policy)
    result = restore_module.restore_day(source, parsed, loaded, target=target, accounts=tuple(account or ()),
                                        regions=tuple(region or ()), overwrite=overwrite)
    pending = [b for b in result.bundles if b.status == "pending"]
    failed = [b for b in result.bundles if b.status == "failed"]
    if as_json:
        out.print_json(json.dumps(result.as_dict()))
    else:
        folder = f"{loaded.bundles_prefix}{parsed:%Y/%m/%d}/"
        rows = [[b.key.removeprefix(folder), b.storage_class, b.status, b.files_written, b.files_present]
                for b in result.bundles]
        if rows:
            columns = ["bundle", "storage class", "status", "files written", "already in place"]
            _show(_table(f"restore {parsed}", columns, rows, right=frozenset({3, 4})))
        for bundle in pending:
            _line(f"{bundle.key}: {bundle.detail}")
        if result.status == "nothing to restore":
            _line(f"{parsed}: nothing to restore (no bundles under {folder} of {result.source})")
        else:
            _line(f"{parsed} {result.status}: {_plural(result.files_written, 'file')} written, "
                  f"{result.files_present:,} already in place, under {result.target}")
    for bundle in failed:
        _line(f"{bundle.key}: {bundle.detail}", error=True)
    if failed:
        raise typer.Exit(1)
    if pending:
        _line(f"S3 is restoring {_plural(len(pending), 'bundle')}; run the same command again later", error=as_json)
        raise typer.Exit(EXIT_PENDING)


lifecycle_app = typer.Typer(
    help="S3 lifecycle rules derived from the retention policy, merged with the bucket's own rules.\n\n"
         "Example: trailsight lifecycle plan --bucket s3://my-trail-bucket",
    no_args_is_help=True,
)


BucketOption = Annotated[str, typer.Option("--bucket", help="The archive's location: s3://BUCKET or s3://BUCKET/prefix.")]


LifecycleLakeOption = Annotated[
    str | None, typer.Option("--lake", help="The lake, if it is in the same bucket: it gets an expiration rule.")
]


def _print_plan(plan: lifecycle_module.LifecyclePlan) -> None:
    diff = plan.diff()
    _line(diff if diff else f"{plan.bucket}: lifecycle rules in sync with the policy")
    if plan.kept:
        _line(f"kept as they are: {', '.join(plan.kept)}")
    for warning in plan.warnings:
        _line(f"warning: {warning}", error=True)


def _print_drift(check: lifecycle_module.LifecycleCheck) -> None:
    if check.in_sync:
        _line(f"{check.bucket}: in sync with the policy")
    for drift in check.drift:
        _line(f"drift: {drift}")


@lifecycle_app.command("plan")
def lifecycle_plan(bucket: BucketOption, lake: LifecycleLakeOption = None, policy: PolicyOption = None) -> None:
    """Show what `lifecycle apply` would change: trailsight's rules, diffed; other rules are kept as they are.

    Example: trailsight lifecycle plan --bucket s3://my-trail-bucket
    """
    _print_plan(lifecycle_module.plan_lifecycle(bucket, load_policy(policy), lake))


@lifecycle_app.command("apply")
def lifecycle_apply(
    bucket: BucketOption,
    lake: LifecycleLakeOption = None,
    policy: PolicyOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking.")] = False,
) -> None:
    """Show the diff, ask, then write exactly that plan (refused if the bucket changed meanwhile) and check it.

    Exit codes: 0 applied (or nothing to change) and in sync;
    1 declined, refused (the bucket changed), or drift left after applying.

    Example: trailsight lifecycle apply --bucket s3://my-trail-bucket --yes
    """
    loaded = load_policy(policy)
    plan = lifecycle_module.plan_lifecycle(bucket, loaded, lake)
    _print_plan(plan)
    if not plan.in_sync and not yes:
        typer.confirm(f"Write these lifecycle rules to bucket {plan.bucket}?", abort=True)
    result = lifecycle_module.apply_lifecycle(bucket, loaded, lake, plan=plan)
    if result.applied:
        changes = len(plan.changes) + int(plan.minimum_size_changes)
        _line(f"applied {_plural(changes, 'change')} to bucket {plan.bucket}")
    else:
        _line("nothing to change")
    _print_drift(result.check)
    if not result.check.in_sync:
        raise typer.Exit(1)


@lifecycle_app.command("check")
def lifecycle_check(bucket: BucketOption, lake: LifecycleLakeOption = None, policy: PolicyOption = None) -> None:
    """Report drift between the bucket's lifecycle rules and the policy: exit 0 in sync, 1 with one line each.

    Example: trailsight lifecycle check --bucket s3://my-trail-bucket
    """
    check = lifecycle_module.check_lifecycle(bucket, load_policy(policy), lake)
    for warning in check.warnings:
        _line(f"warning: {warning}", error=True)
    _print_drift(check)
    if not check.in_sync:
        raise typer.Exit(1)


retention_app = typer.Typer(
    help="The retention policy: what keeping the raw archive costs, as it is and under the policy.\n\n"
         "Example: trailsight retention plan --source s3://my-trail-bucket --years 7",
    no_args_is_help=True,
)


def _money(values: list[float]) -> list[str]:
    """Amounts with one number of decimals, enough to tell the smallest apart (a sample costs fractions of a cent)."""
    smallest = min((abs(v) for v in values if v), default=1.0)
    decimals = 2 if smallest >= 1 else 4 if smallest >= 0.01 else 6
    return [f"{v:,.{decimals}f}" for v in values]


def _size(count: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:,.1f} {unit}"
    return f"{count:,} B"


@retention_app.command("defaults")
def retention_defaults(
    prices: Annotated[bool, typer.Option("--prices", help="Print the price table instead of the policy.")] = False,
) -> None:
    """Print the policy (or price table) trailsight uses when none is given, to copy and edit.

    Example: trailsight retention defaults > retention.toml
    """
    shipped = costs.DEFAULT_PRICES if prices else DEFAULT_POLICY
    sys.stdout.write(shipped.read_text())


@retention_app.command("plan")
def retention_plan(
    source: SourceOption,
    start: StartOption = None,
    end: EndOption = None,
    years: Annotated[int | None, typer.Option("--years", min=1, max=30, help="Horizon (default: the policy's "
                                              "retain_days in years, or 5 when kept forever).")] = None,
    prices: Annotated[Path | None, typer.Option("--prices", help="Price table (default: the shipped one, see "
                                                "`retention defaults --prices`).")] = None,
    policy: PolicyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Inventory the raw archive and cost keeping it as is, with a lifecycle rule alone, and under the policy.

    --start/--end sample a range of delivery days (cheaper on a huge bucket);
    its average day stands for every day. Prices: retention-prices.toml.

    Example: trailsight retention plan --source ./archive --years 7
    """
    first, last = date_range(None, start, end)
    plan = costs.cost_plan(source, load_policy(policy), costs.load_prices(prices), years=years, start=first,
                           end=last)
    if as_json:
        out.print_json(json.dumps(plan.as_dict()))
        return
    _print_cost_plan(plan)


def _print_cost_plan(plan: costs.CostPlan) -> None:
    """Inventory, size distribution, scenarios by month, where the money goes, notes."""
    inventory, money = plan.inventory.summary(), plan.currency
    _show(_table(f"raw archive {inventory['first_day']} .. {inventory['last_day']} "
                 f"({_plural(inventory['days'], 'day')})", ["", "objects", "size"], [
        ["raw objects", inventory["objects"], _size(inventory["bytes"])],
        ["  event files", inventory["event_files"], ""],
        ["  digests and others", inventory["other_objects"], ""],
        ["  under 128 KB", inventory["objects_under_128k"], ""],
        ["per day", f"{inventory['objects_per_day']:,}", _size(inventory["bytes_per_day"])],
        ["bundles the policy makes", inventory["bundles"], _size(inventory["bundle_bytes"])],
        ["  under 128 KB", inventory["bundles_under_128k"], ""],
    ], right=frozenset({1, 2})))
    total = max(plan.inventory.objects, 1)
    _show(_table("size distribution", ["object size", "objects", "share", "bytes"], [
        [b.label, b.objects, f"{b.objects / total:.1%}", _size(b.bytes)]
        for b in plan.inventory.size_distribution()], right=frozenset({1, 2, 3})))
    _line(f"current monthly storage cost as is: {_money([plan.current_monthly_as_is])[0]} {money}")

    columns = len(plan.scenarios[0].monthly)
    figures = [[s.monthly[0], s.monthly[min(11, columns - 1)], s.monthly[-1], s.total] for s in plan.scenarios]
    shown = _money([v for row in figures for v in row])
    _show(_table(f"monthly cost, {money}", ["scenario", "month 1", "month 12", "last month",
                                            f"total over {plan.years} years"],
                 [[s.name, *shown[4 * i:4 * i + 4]] for i, s in enumerate(plan.scenarios)],
                 right=frozenset({1, 2, 3, 4})))
    for scenario in plan.scenarios:
        _line(f"{scenario.name}: {scenario.description}")

    keys = [(s.name, c) for s in plan.scenarios for c in s.components]
    amounts = dict(zip(keys, _money([v for s in plan.scenarios for v in s.components.values()]), strict=True))
    components = sorted({c for _, c in keys})
    _show(_table(f"where the money goes, total over {plan.years} years, {money}",
                 ["component", *(s.name for s in plan.scenarios)],
                 [[c, *(amounts.get((s.name, c)) for s in plan.scenarios)] for c in components],
                 right=frozenset(range(1, len(plan.scenarios) + 1))))
    for note in plan.notes:
        _line(f"- {note}")
