"""User-supplied Sigma rules (SigmaHQ format, `logsource: product aws, service cloudtrail`) run over the lake.

Rules are converted with pySigma: a small backend (`CloudTrailSqlBackend`) turns a rule's detection into an SQL
predicate over the `cloudtrail_calls` view, mapping Sigma's CloudTrail field names to this schema: top-level
fields to their lower-case columns, `userIdentity.*` to the struct's members, and `requestParameters.*`,
`responseElements.*`, `additionalEventData.*` and `serviceEventDetails.*` to JSON extraction
(`json_extract_scalar`, Athena's function, which DuckDB connections define as a macro). Matching is
case-insensitive as Sigma specifies, unless a rule says `|cased`. The same SQL runs on DuckDB and, rendered
by sqlglot with its one `$day` parameter in the WHERE clause, on Athena.

A rule that cannot be converted (another log source, an unknown field, a modifier this backend lacks such as
`|cidr`, a correlation rule) is listed with its reason and never stops the run; neither does a rule whose SQL
fails when run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, ClassVar

import yaml

from trailsight.errors import TrailsightError, UsageError
from trailsight.report.queries import Rows, run_query

try:
    from sigma.collection import SigmaCollection
    from sigma.conditions import ConditionAND, ConditionItem, ConditionNOT, ConditionOR
    from sigma.conversion.base import TextQueryBackend
    from sigma.exceptions import SigmaError
    from sigma.rule import SigmaRule
    from sigma.types import SigmaCompareExpression
except ImportError:  # pragma: no cover - the optional extra is missing
    TextQueryBackend = object  # type: ignore[assignment,misc]
    SIGMA_MISSING = True
else:
    SIGMA_MISSING = False

TOP_LEVEL = {name.lower(): name.lower() for name in (
    "eventVersion", "eventTime", "eventSource", "eventName", "awsRegion", "sourceIPAddress", "userAgent",
    "errorCode", "errorMessage", "requestID", "eventID", "readOnly", "eventType", "managementEvent",
    "recipientAccountId", "sharedEventID", "vpcEndpointId", "eventCategory", "apiVersion")}
JSON_COLUMNS = {"requestparameters", "responseelements", "additionaleventdata", "serviceeventdetails"}
IDENTITY_MEMBERS = {"type", "principalid", "arn", "accountid", "invokedby", "accesskeyid", "username",
                    "onbehalfof.userid", "onbehalfof.identitystorearn", "sessioncontext.attributes.mfaauthenticated",
                    "sessioncontext.attributes.creationdate", "sessioncontext.sessionissuer.type",
                    "sessioncontext.sessionissuer.principalid", "sessioncontext.sessionissuer.arn",
                    "sessioncontext.sessionissuer.accountid", "sessioncontext.sessionissuer.username",
                    "sessioncontext.sourceidentity", "sessioncontext.ec2roledelivery"}
JSON_PATH = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
EVENT_COLUMNS = ("eventid", "eventtime", "account", "region", "eventsource", "eventname", "principal", "errorcode",
                 "sourceipaddress", "useragent")


class UnknownField(ValueError):
    """A Sigma field this schema has no column for."""


def sql_field(name: str) -> str:
    """The SQL expression of a Sigma CloudTrail field name."""
    lowered = name.lower()
    if lowered in TOP_LEVEL:
        return TOP_LEVEL[lowered]
    head, _, rest = name.partition(".")
    if head.lower() == "useridentity" and rest.lower() in IDENTITY_MEMBERS:
        return "useridentity." + rest.lower()
    if head.lower() in JSON_COLUMNS and rest and JSON_PATH.match(rest):
        return f"json_extract_scalar({head.lower()}, '$.{rest}')"
    raise UnknownField(f"field {name!r} has no column in the CloudTrail schema")


class CloudTrailSqlBackend(TextQueryBackend):  # type: ignore[misc,valid-type]
    """pySigma backend: a Sigma detection as an SQL predicate over `cloudtrail_calls` (DuckDB and Athena)."""

    name: ClassVar[str] = "trailsight CloudTrail SQL"
    formats: ClassVar[dict[str, str]] = {"default": "SQL predicate over cloudtrail_calls"}
    requires_pipeline: ClassVar[bool] = False
    precedence: ClassVar[tuple[type[ConditionItem], ...]] = (ConditionNOT, ConditionAND, ConditionOR) \
        if not SIGMA_MISSING else ()
    group_expression: ClassVar[str] = "({expr})"
    token_separator: str = " "
    or_token: ClassVar[str] = "OR"
    and_token: ClassVar[str] = "AND"
    not_token: ClassVar[str] = "NOT"
    eq_token: ClassVar[str] = " = "
    eq_expression: ClassVar[str] = "lower(CAST({field} AS VARCHAR)) = lower({value})"
    str_quote: ClassVar[str] = "'"
    escape_char: ClassVar[str] = "'"  # a quote doubles; LIKE's escape character is the quote too
    wildcard_multi: ClassVar[str] = "%"
    wildcard_single: ClassVar[str | None] = None  # SQL LIKE has "_", but escaping it in plain values breaks them
    add_escaped: ClassVar[str] = ""
    bool_values: ClassVar[dict[bool, str]] = {True: "true", False: "false"}
    wildcard_match_expression: ClassVar[str] = "lower(CAST({field} AS VARCHAR)) LIKE lower({value}) ESCAPE ''''"
    case_sensitive_match_expression: ClassVar[str] = "CAST({field} AS VARCHAR) LIKE {value} ESCAPE ''''"
    re_expression: ClassVar[str] = "regexp_matches(CAST({field} AS VARCHAR), '{regex}')"
    re_escape_char: ClassVar[str] = "'"
    re_escape: ClassVar[tuple[str, ...]] = ("'",)
    re_escape_escape_char: bool = False
    field_null_expression: ClassVar[str] = "{field} IS NULL"
    field_exists_expression: ClassVar[str] = "{field} IS NOT NULL"
    field_not_exists_expression: ClassVar[str] = "{field} IS NULL"
    compare_op_expression: ClassVar[str] = "TRY_CAST({field} AS DOUBLE) {operator} {value}"
    compare_operators: ClassVar[dict[Any, str]] = {
        SigmaCompareExpression.CompareOperators.LT: "<", SigmaCompareExpression.CompareOperators.LTE: "<=",
        SigmaCompareExpression.CompareOperators.GT: ">", SigmaCompareExpression.CompareOperators.GTE: ">=",
    } if not SIGMA_MISSING else {}
    convert_or_as_in: ClassVar[bool] = False
    convert_and_as_in: ClassVar[bool] = False

    def escape_and_quote_field(self, field_name: str) -> str:
        return sql_field(field_name)


@dataclass
class SigmaRuleResult:
    """One rule: its SQL when it converted, its matching events when it ran, or why it did neither."""

    path: str
    title: str
    rule_id: str | None
    level: str | None
    sql: str | None = None
    error: str | None = None
    matches: int = 0
    events: Rows = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "title": self.title, "id": self.rule_id, "level": self.level, "sql": self.sql,
                "error": self.error, "matches": self.matches, "events": self.events}


def _require_sigma() -> None:
    if SIGMA_MISSING:
        raise UsageError("Sigma rules need pySigma: pip install 'trailsight[sigma]'")


def convert_rules(folder: str | Path) -> list[SigmaRuleResult]:
    """Every `*.yml`/`*.yaml` rule under `folder`, converted to SQL or listed with the reason it was not."""
    _require_sigma()
    root = Path(folder)
    if not root.is_dir():
        raise UsageError(f"{folder} is not a folder of Sigma rules")
    backend = CloudTrailSqlBackend()
    results = []
    for path in sorted([*root.rglob("*.yml"), *root.rglob("*.yaml")]):
        relative = str(path.relative_to(root))
        try:
            collection = SigmaCollection.from_yaml(path.read_text())
        except (SigmaError, OSError, ValueError, yaml.YAMLError) as exc:
            reason = str(exc).splitlines()[0]
            results.append(SigmaRuleResult(relative, path.stem, None, None, error=f"not a Sigma rule: {reason}"))
            continue
        for rule in collection.rules:
            results.append(_convert(backend, relative, rule))
    return results


def _convert(backend: Any, path: str, rule: Any) -> SigmaRuleResult:
    result = SigmaRuleResult(path, rule.title, str(rule.id) if rule.id else None,
                             rule.level.name.lower() if rule.level else None)
    if not isinstance(rule, SigmaRule):
        result.error = "correlation rules are not supported"
        return result
    source = rule.logsource
    if (source.product or "").lower() != "aws" or (source.service or "").lower() != "cloudtrail":
        result.error = (f"log source is product {source.product!r}, service {source.service!r}; "
                        "only product aws, service cloudtrail applies to CloudTrail")
        return result
    try:
        queries = backend.convert_rule(rule)
    except UnknownField as exc:
        result.error = str(exc)
        return result
    except (SigmaError, NotImplementedError) as exc:
        result.error = f"cannot convert: {str(exc).splitlines()[0]}"
        return result
    result.sql = " OR ".join(f"({query})" for query in queries)
    return result


def rule_query(predicate: str) -> str:
    """The query of one converted rule for one day (`$day` is its only parameter, bound in the WHERE clause)."""
    return (f"SELECT {', '.join(EVENT_COLUMNS)} FROM cloudtrail_calls "
            f"WHERE event_date = $day AND ({predicate}) ORDER BY eventtime, eventid")


def run_sigma_rules(con: Any, rules: list[SigmaRuleResult], day: date, max_events: int = 50) -> list[SigmaRuleResult]:
    """Run each converted rule for one day; a rule whose query fails gets the error, the others still run."""
    for rule in rules:
        if rule.sql is None:
            continue
        try:
            rows = run_query(con, f"sigma rule {rule.title}", rule_query(rule.sql), {"day": day})
        except TrailsightError as exc:  # one bad rule never stops the others; its error is reported
            rule.error = f"query failed: {str(exc).splitlines()[0]}"
            continue
        rule.matches = len(rows)
        rule.events = rows[:max_events]
    return rules
