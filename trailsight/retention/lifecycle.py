"""S3 lifecycle rules derived from the retention policy, merged with the rules a bucket already has.

S3 keeps one lifecycle configuration per bucket and a write replaces all of it, so trailsight reads the
configuration, replaces only the rules it owns and writes the whole list back. It owns the rules whose ID
starts with the policy's `rule_id_prefix` and carries its scope (`@<prefix>` when the archive sits under a
prefix of the bucket, so two archives in one bucket do not remove each other's rules); every other rule is
kept exactly as it was. `plan` shows the difference, `apply` writes it (refusing if the bucket changed since
the plan it is given), `check` reports drift.

Rules written (days count from the object's creation, as S3 does; the policy counts from delivery):
  <id>raw        AWSLogs/: expire raw leftovers at retain_days (delete markers when kept forever)
  <id>bundles    <archive>/bundles/: the policy's later transitions; expire at retain_days - keep_as_delivered_days
  <id>manifests  <archive>/manifests/: expire with the bundles (never transitioned: restore reads them)
  <id>lake       the lake's prefix, when the lake is in this bucket: expire after the lake's keep_days
each with noncurrent-version expiration and abort of incomplete multipart uploads.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from trailsight.errors import LifecycleError
from trailsight.retention.policy import RAW_PREFIX, Policy, load_policy
from trailsight.storage.aws import client, split_s3_url

MAX_RULES = 1000
S3_DEFAULT_MINIMUM_SIZE = "all_storage_classes_128K"


@dataclass(frozen=True)
class RuleChange:
    """One owned rule that differs between the bucket and the policy."""

    rule_id: str
    action: str  # add | change | remove
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@dataclass
class LifecyclePlan:
    """The bucket's rules now, the full configuration the policy asks for, and the difference."""

    bucket: str
    prefix: str
    current: list[dict[str, Any]]
    rules: list[dict[str, Any]]
    changes: list[RuleChange]
    kept: list[str]
    current_minimum_object_size: str | None
    minimum_object_size: str
    warnings: list[str] = field(default_factory=list)
    had_configuration: bool = True

    @property
    def minimum_size_changes(self) -> bool:
        return (self.current_minimum_object_size or S3_DEFAULT_MINIMUM_SIZE) != self.minimum_object_size

    @property
    def in_sync(self) -> bool:
        return not self.changes and not self.minimum_size_changes

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "in_sync": self.in_sync, "diff": self.diff()}

    def diff(self) -> str:
        """A readable diff of what `apply` would change; empty when the bucket matches the policy."""
        lines: list[str] = []
        for change in self.changes:
            sign = {"add": "+", "change": "~", "remove": "-"}[change.action]
            lines.append(f"{sign} {change.action} rule {change.rule_id}")
            before = _pretty(change.before).splitlines() if change.before else []
            after = _pretty(change.after).splitlines() if change.after else []
            body = difflib.unified_diff(before, after, "bucket", "policy", lineterm="", n=20)
            lines += [f"    {line}" for line in list(body)[2:]]
        if self.minimum_size_changes:
            lines.append(f"~ TransitionDefaultMinimumObjectSize: {self.current_minimum_object_size or 'unset'} -> "
                         f"{self.minimum_object_size}")
        return "\n".join(lines)


@dataclass
class LifecycleCheck:
    """Drift between the bucket and the policy, one line per difference."""

    bucket: str
    in_sync: bool
    drift: list[str]
    warnings: list[str]
    plan: LifecyclePlan

    def as_dict(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "in_sync": self.in_sync, "drift": self.drift, "warnings": self.warnings}


@dataclass
class LifecycleApplied:
    plan: LifecyclePlan
    applied: bool
    check: LifecycleCheck

    def as_dict(self) -> dict[str, Any]:
        return {"applied": self.applied, "plan": self.plan.as_dict(), "check": self.check.as_dict()}


def _pretty(rule: dict[str, Any] | None) -> str:
    return json.dumps(rule, indent=2, sort_keys=True, default=str)


def _normal(value: Any) -> Any:
    """Comparable form of a rule: no empty values, transitions in day order."""
    if isinstance(value, dict):
        cleaned = {k: _normal(v) for k, v in value.items() if v not in (None, {}, [])}
        if isinstance(cleaned.get("Transitions"), list):
            cleaned["Transitions"] = sorted(cleaned["Transitions"], key=lambda t: (t.get("Days", 0), str(t)))
        return cleaned
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def _same(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    return json.dumps(_normal(a), sort_keys=True, default=str) == json.dumps(_normal(b), sort_keys=True, default=str)


# --- the rules the policy asks for ------------------------------------------------------------------------


def _bucket_and_prefix(url: str) -> tuple[str, str]:
    if not url.startswith("s3://") and ("/" in url.strip("/") or url.startswith((".", "/"))):
        raise LifecycleError(f"lifecycle rules exist only on S3 buckets, and {url!r} is not one; "
                             "give --bucket s3://BUCKET[/prefix]")
    bucket, prefix = split_s3_url(url if url.startswith("s3://") else f"s3://{url}")
    if not bucket:
        raise LifecycleError("no bucket given; use --bucket s3://BUCKET[/prefix] (the archive's location)")
    return bucket, f"{prefix}/" if prefix else ""


def rule_id(policy: Policy, prefix: str, name: str) -> str:
    """`trailsight-raw`, or `trailsight-raw@cloudtrail` for an archive under the prefix `cloudtrail/`."""
    return f"{policy.rule_id_prefix}{name}" + (f"@{prefix.rstrip('/')}" if prefix else "")


def owns(policy: Policy, prefix: str, rule: dict[str, Any]) -> bool:
    """Whether a rule is trailsight's for this archive (its ID has the rule prefix and this archive's scope)."""
    rid = str(rule.get("ID", ""))
    if not rid.startswith(policy.rule_id_prefix):
        return False
    scope = rid.rpartition("@")[2] if "@" in rid else ""
    return scope == prefix.rstrip("/")


def desired_rules(policy: Policy, prefix: str = "", lake_prefix: str | None = None) -> list[dict[str, Any]]:
    """The rules the policy asks for, for an archive at `prefix` of its bucket (and a lake at `lake_prefix`)."""
    keep, retain = policy.keep_as_delivered_days, policy.retain_days

    def rule(name: str, where: str, **actions: Any) -> dict[str, Any] | None:
        if policy.noncurrent_version_days:
            actions["NoncurrentVersionExpiration"] = {"NoncurrentDays": policy.noncurrent_version_days}
        if policy.abort_incomplete_multipart_days:
            actions["AbortIncompleteMultipartUpload"] = {
                "DaysAfterInitiation": policy.abort_incomplete_multipart_days}
        if not actions:
            return None
        return {"ID": rule_id(policy, prefix, name), "Filter": {"Prefix": where}, "Status": "Enabled", **actions}

    raw_expiry = {"Days": retain} if retain else {"ExpiredObjectDeleteMarker": True}
    bundle_expiry = {"Expiration": {"Days": retain - keep}} if retain else {}
    transitions = [{"Days": t.after_days - keep, "StorageClass": t.storage_class} for t in policy.transitions]
    rules = [
        rule("raw", f"{prefix}{RAW_PREFIX}", Expiration=raw_expiry),
        rule("bundles", f"{prefix}{policy.bundles_prefix}", **({"Transitions": transitions} if transitions else {}),
             **bundle_expiry),
        rule("manifests", f"{prefix}{policy.manifests_prefix}", **bundle_expiry),
    ]
    if lake_prefix is not None:
        lake_expiry = {"Expiration": {"Days": policy.lake_keep_days}} if policy.lake_keep_days else {}
        rules.append(rule("lake", lake_prefix, **lake_expiry))
    return [r for r in rules if r is not None]


def _rule_prefix(rule: dict[str, Any]) -> str | None:
    """The key prefix a rule applies to ("" = whole bucket); None when it only selects by tag."""
    flt = rule.get("Filter")
    if flt is None:
        return str(rule.get("Prefix", ""))
    if "Prefix" in flt:
        return str(flt["Prefix"])
    if "And" in flt:
        return str(flt["And"].get("Prefix", ""))
    return None if "Tag" in flt else ""


def _overlap_warnings(kept: list[dict[str, Any]], ours: list[dict[str, Any]]) -> list[str]:
    warnings = []
    for other in kept:
        where = _rule_prefix(other)
        acts = [a for a in ("Expiration", "Transitions", "Transition") if other.get(a)]
        if other.get("Status") != "Enabled" or not acts or where is None:
            continue
        for rule in ours:
            mine = rule["Filter"]["Prefix"]
            if mine.startswith(where) or where.startswith(mine):
                warnings.append(f"rule {other.get('ID', '(no ID)')!r} (not trailsight's) also applies to {mine!r} "
                                f"with {', '.join(acts)}: it may move or delete those objects before the policy "
                                "says; narrow its filter")
                break
    return warnings


# --- reading, planning, writing ---------------------------------------------------------------------------


def _read(bucket: str) -> tuple[list[dict[str, Any]], str | None, bool]:
    try:
        response = client("s3").get_bucket_lifecycle_configuration(Bucket=bucket)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "NoSuchLifecycleConfiguration":
            return [], None, False
        raise _s3_error(bucket, code, "read", "s3:GetLifecycleConfiguration") from None
    return list(response.get("Rules", [])), response.get("TransitionDefaultMinimumObjectSize"), True


def _s3_error(bucket: str, code: str, verb: str, permission: str) -> LifecycleError:
    if code == "NoSuchBucket":
        return LifecycleError(f"bucket {bucket} does not exist; check --bucket")
    if code in ("AccessDenied", "403"):
        return LifecycleError(f"cannot {verb} the lifecycle rules of {bucket}: access denied; grant {permission}")
    return LifecycleError(f"cannot {verb} the lifecycle rules of {bucket} ({code}); try again")


def _lake_prefix(bucket: str, lake: str | None, warnings: list[str]) -> str | None:
    if not lake:
        return None
    if not lake.startswith("s3://"):
        warnings.append(f"the lake {lake} is not on S3; [lake] keep_days is not enforced by lifecycle rules there")
        return None
    lake_bucket, lake_path = split_s3_url(lake)
    if lake_bucket != bucket:
        warnings.append(f"the lake is in bucket {lake_bucket}, not {bucket}; no lake rule is planned here")
        return None
    if not lake_path:
        raise LifecycleError("the lake cannot be the whole bucket; put it under a prefix such as s3://BUCKET/lake")
    return f"{lake_path}/"


def plan_lifecycle(bucket_url: str, policy: Policy | None = None, lake: str | None = None) -> LifecyclePlan:
    """What `apply_lifecycle` would write: trailsight's rules replaced, every other rule kept as it is."""
    policy = policy or load_policy()
    bucket, prefix = _bucket_and_prefix(bucket_url)
    current, current_size, had = _read(bucket)
    warnings: list[str] = []
    wanted = desired_rules(policy, prefix, _lake_prefix(bucket, lake, warnings))
    owned = {str(r.get("ID")): r for r in current if owns(policy, prefix, r)}
    kept = [r for r in current if not owns(policy, prefix, r)]
    changes = []
    for rule in wanted:
        before = owned.get(rule["ID"])
        if before is None:
            changes.append(RuleChange(rule["ID"], "add", None, rule))
        elif not _same(before, rule):
            changes.append(RuleChange(rule["ID"], "change", before, rule))
    wanted_ids = {r["ID"] for r in wanted}
    changes += [RuleChange(rid, "remove", r, None) for rid, r in owned.items() if rid not in wanted_ids]
    rules = kept + wanted
    if len(rules) > MAX_RULES:
        raise LifecycleError(f"bucket {bucket} would have {len(rules)} lifecycle rules, over S3's {MAX_RULES}; "
                             "remove unused rules first")
    warnings += _overlap_warnings(kept, wanted)
    return LifecyclePlan(bucket, prefix, current, rules, changes, [str(r.get("ID", "(no ID)")) for r in kept],
                         current_size, policy.minimum_object_size, warnings, had)


def check_lifecycle(bucket_url: str, policy: Policy | None = None, lake: str | None = None) -> LifecycleCheck:
    """Drift: owned rules missing, different or no longer in the policy, and the minimum-size setting."""
    plan = plan_lifecycle(bucket_url, policy, lake)
    drift = []
    for change in plan.changes:
        drift.append({"add": f"rule {change.rule_id} is missing from the bucket",
                      "change": f"rule {change.rule_id} differs from the policy",
                      "remove": f"rule {change.rule_id} is trailsight's but no longer in the policy"}[change.action])
    if plan.minimum_size_changes:
        drift.append(f"TransitionDefaultMinimumObjectSize is {plan.current_minimum_object_size or 'unset'}, the "
                     f"policy says {plan.minimum_object_size}")
    return LifecycleCheck(plan.bucket, not drift, drift, plan.warnings, plan)


def apply_lifecycle(bucket_url: str, policy: Policy | None = None, lake: str | None = None,
                    plan: LifecyclePlan | None = None) -> LifecycleApplied:
    """Write the merged configuration, then read it back and check it.

    Given the `plan` a user approved, refuses to write if the bucket's rules changed since that plan was made.
    """
    policy = policy or load_policy()
    fresh = plan_lifecycle(bucket_url, policy, lake)
    if plan is not None and (not _same({"r": plan.current}, {"r": fresh.current})
                             or plan.current_minimum_object_size != fresh.current_minimum_object_size):
        raise LifecycleError(f"the lifecycle rules of {fresh.bucket} changed since the plan was made; "
                             "run `trailsight lifecycle plan` again and review it")
    applied = False
    if not fresh.in_sync:
        s3 = client("s3")
        try:
            if fresh.rules:
                s3.put_bucket_lifecycle_configuration(
                    Bucket=fresh.bucket, LifecycleConfiguration={"Rules": fresh.rules},
                    TransitionDefaultMinimumObjectSize=fresh.minimum_object_size)
            else:
                s3.delete_bucket_lifecycle(Bucket=fresh.bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise _s3_error(fresh.bucket, code, "write", "s3:PutLifecycleConfiguration") from None
        applied = True
    return LifecycleApplied(fresh, applied, check_lifecycle(bucket_url, policy, lake))
