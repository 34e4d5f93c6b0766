"""The API catalogue read from apis.yaml, checked, with its builders resolved through an explicit registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trailsight.synth.builders import (
    _b_alarms,
    _b_assume_role,
    _b_assume_saml,
    _b_assume_web,
    _b_attach_role_policy,
    _b_config_rules,
    _b_console_login,
    _b_create_access_key,
    _b_create_bucket,
    _b_create_policy,
    _b_create_sg,
    _b_create_tags,
    _b_create_user,
    _b_ddb_item,
    _b_ddb_query,
    _b_ddb_table,
    _b_describe,
    _b_describe_ni,
    _b_describe_sg,
    _b_describe_trails,
    _b_federation_token,
    _b_gd,
    _b_gd_findings,
    _b_iam_list,
    _b_iam_policy_version,
    _b_iam_role,
    _b_instances_state,
    _b_invoke,
    _b_kms,
    _b_kms_datakey,
    _b_kms_rotate,
    _b_lambda_fn,
    _b_lambda_update,
    _b_list_buckets,
    _b_logs_groups,
    _b_logs_retention,
    _b_logs_stream,
    _b_lookup,
    _b_none,
    _b_put_bucket_policy,
    _b_put_evaluations,
    _b_put_role_policy,
    _b_regions,
    _b_rotation,
    _b_run_instances,
    _b_s3_object,
    _b_s3_put,
    _b_secret,
    _b_sg_ingress,
    _b_sg_revoke,
    _b_ssm_describe,
    _b_ssm_param,
    _b_ssm_params,
    _b_ssm_update,
    _b_sso_role,
    _b_trail,
    _bucket_builder,
)
from trailsight.synth.primitives import _read_data
from trailsight.synth.tunables import ERROR_SCALE
from trailsight.synth.world import _A, _H, _S, Builder, _Api

BUILDERS: dict[str, Builder] = {
    "alarms": _b_alarms,
    "assume_role": _b_assume_role,
    "assume_saml": _b_assume_saml,
    "assume_web": _b_assume_web,
    "attach_role_policy": _b_attach_role_policy,
    "config_rules": _b_config_rules,
    "console_login": _b_console_login,
    "create_access_key": _b_create_access_key,
    "create_bucket": _b_create_bucket,
    "create_policy": _b_create_policy,
    "create_sg": _b_create_sg,
    "create_tags": _b_create_tags,
    "create_user": _b_create_user,
    "ddb_item": _b_ddb_item,
    "ddb_query": _b_ddb_query,
    "ddb_table": _b_ddb_table,
    "describe_ni": _b_describe_ni,
    "describe_sg": _b_describe_sg,
    "describe_trails": _b_describe_trails,
    "federation_token": _b_federation_token,
    "gd": _b_gd,
    "gd_findings": _b_gd_findings,
    "iam_list": _b_iam_list,
    "iam_policy_version": _b_iam_policy_version,
    "iam_role": _b_iam_role,
    "invoke": _b_invoke,
    "kms": _b_kms,
    "kms_datakey": _b_kms_datakey,
    "kms_rotate": _b_kms_rotate,
    "lambda_fn": _b_lambda_fn,
    "lambda_update": _b_lambda_update,
    "list_buckets": _b_list_buckets,
    "logs_groups": _b_logs_groups,
    "logs_retention": _b_logs_retention,
    "logs_stream": _b_logs_stream,
    "lookup": _b_lookup,
    "none": _b_none,
    "put_bucket_policy": _b_put_bucket_policy,
    "put_evaluations": _b_put_evaluations,
    "put_role_policy": _b_put_role_policy,
    "regions": _b_regions,
    "rotation": _b_rotation,
    "run_instances": _b_run_instances,
    "s3_object": _b_s3_object,
    "s3_put": _b_s3_put,
    "secret": _b_secret,
    "sg_ingress": _b_sg_ingress,
    "sg_revoke": _b_sg_revoke,
    "sso_role": _b_sso_role,
    "ssm_describe": _b_ssm_describe,
    "ssm_param": _b_ssm_param,
    "ssm_params": _b_ssm_params,
    "ssm_update": _b_ssm_update,
    "trail": _b_trail,
}

# Parametric builders: the file writes {factory: [arguments]}.
BUILDER_FACTORIES: dict[str, Callable[..., Builder]] = {
    "bucket_subresource": _bucket_builder,
    "describe": _b_describe,
    "instances_state": _b_instances_state,
}
CALLER_GROUPS = frozenset((_H, _A, _S, "saml", "webid", "idc", "root"))
_API_FIELDS = {  # apis.yaml field -> _Api field
    "source": "source",
    "name": "name",
    "read_only": "read_only",
    "cross_account": "cross_account",
    "callers": "groups",
    "builder": "build",
    "error_rate": "err_rate",
    "errors": "errors",
    "svc_hosts": "svc_hosts",
    "event_type": "event_type",
    "category": "category",
    "version": "version",
    "request_id": "request_id",
    "tls": "tls",
}
_REQUIRED_API_FIELDS = ("source", "name", "read_only", "callers", "builder")


def _builder(spec: Any, where: str) -> Builder:
    """A builder by name, or a parametric one from ``{factory: [arguments]}``."""
    if isinstance(spec, str) and spec in BUILDERS:
        return BUILDERS[spec]
    if isinstance(spec, dict) and len(spec) == 1:
        ((factory, args),) = spec.items()
        if factory in BUILDER_FACTORIES and isinstance(args, list):
            return BUILDER_FACTORIES[factory](*args)
    raise ValueError(
        f"{where}: unknown builder {spec!r}; use one of {sorted(BUILDERS)} or {{factory: [arguments]}} with a "
        f"factory of {sorted(BUILDER_FACTORIES)}"
    )


def _api_rows(catalogue: dict[str, Any], section: str) -> list[_Api]:
    """The APIs of one section of the catalogue, checked: a malformed row names itself in the error."""
    errors = {name: (e["code"], e["message"]) for name, e in catalogue["errors"].items()}
    host_groups = catalogue["service_hosts"]
    apis = []
    for n, row in enumerate(catalogue[section], start=1):
        where = f"apis.yaml {section} #{n} ({row.get('source')}:{row.get('name')})"
        unknown = sorted(set(row) - set(_API_FIELDS))
        missing = [f for f in _REQUIRED_API_FIELDS if f not in row]
        if unknown or missing:
            raise ValueError(f"{where}: unknown fields {unknown}, missing fields {missing}")
        bad_groups = sorted(set(row["callers"]) - CALLER_GROUPS)
        if bad_groups:
            raise ValueError(f"{where}: unknown caller groups {bad_groups}; use {sorted(CALLER_GROUPS)}")
        fields = {_API_FIELDS[k]: v for k, v in row.items()}
        fields["groups"] = dict(row["callers"])
        fields["build"] = _builder(row["builder"], where)
        unknown_errors = [e for e in row.get("errors", ()) if e not in errors]
        if unknown_errors:
            raise ValueError(f"{where}: errors {unknown_errors} are not in the errors table")
        fields["errors"] = tuple(errors[e] for e in row.get("errors", ()))
        hosts = row.get("svc_hosts", ())
        if isinstance(hosts, str):
            if hosts not in host_groups:
                raise ValueError(f"{where}: svc_hosts {hosts!r} is not in the service_hosts table")
            hosts = host_groups[hosts]
        fields["svc_hosts"] = tuple(hosts)
        if row["callers"].get(_S) and not hosts:
            raise ValueError(f"{where}: AWS services call it (callers: svc) but it names no svc_hosts")
        apis.append(_Api(**fields))
    return apis


def api_catalogue(catalogue: dict[str, Any]) -> list[_Api]:
    """The APIs of normal traffic in popularity order, weighted by rank (Zipf, s=1), error rates scaled."""
    apis = _api_rows(catalogue, "apis")
    seen: set[str] = set()
    for rank, api in enumerate(apis, start=1):
        if api.key in seen:
            raise ValueError(f"apis.yaml: {api.key} is listed twice")
        seen.add(api.key)
        api.weight = 1.0 / rank
        api.err_rate = min(0.5, api.err_rate * ERROR_SCALE)
        if api.err_rate and not api.errors:
            raise ValueError(f"{api.key} has an error rate but no errors")
    return apis


_CATALOGUE = _read_data("apis.yaml")
APIS = api_catalogue(_CATALOGUE)
_API_BY_KEY = {a.key: a for a in APIS}

# APIs only incidents call (StopLogging): never drawn for normal traffic.
_INCIDENT_APIS = {a.key: a for a in _api_rows(_CATALOGUE, "incident_apis")}
_GLOBAL_SERVICES = frozenset(_CATALOGUE["global_services"])
_VPCE_SOURCES = frozenset(_CATALOGUE["vpc_endpoint_services"])
