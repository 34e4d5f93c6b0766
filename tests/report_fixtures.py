"""Small CloudTrail lakes for the report tests: events are written as CloudTrail files, then ingested."""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from conftest import ACCOUNT, REGION, log_key, make_event

from trailsight.lake.ingest import ingest


def iam_user(name: str, account: str = ACCOUNT) -> dict[str, Any]:
    return {"type": "IAMUser", "principalId": f"AIDA{name.upper()}", "arn": f"arn:aws:iam::{account}:user/{name}",
            "accountId": account, "accessKeyId": "AKIAEXAMPLE", "userName": name}


def assumed_role(role: str, session: str, account: str = ACCOUNT, invoked_by: str | None = None) -> dict[str, Any]:
    identity: dict[str, Any] = {
        "type": "AssumedRole", "principalId": f"AROA{role.upper()}:{session}",
        "arn": f"arn:aws:sts::{account}:assumed-role/{role}/{session}", "accountId": account,
        "accessKeyId": "ASIAEXAMPLE",
        "sessionContext": {
            "sessionIssuer": {"type": "Role", "principalId": f"AROA{role.upper()}",
                              "arn": f"arn:aws:iam::{account}:role/{role}", "accountId": account, "userName": role},
            "attributes": {"creationDate": "2024-03-10T00:00:00Z", "mfaAuthenticated": "false"},
        },
    }
    if invoked_by:
        identity["invokedBy"] = invoked_by
    return identity


def root(account: str = ACCOUNT, invoked_by: str | None = None) -> dict[str, Any]:
    identity = {"type": "Root", "principalId": account, "arn": f"arn:aws:iam::{account}:root", "accountId": account}
    if invoked_by:
        identity["invokedBy"] = invoked_by
    return identity


def service(host: str) -> dict[str, Any]:
    return {"type": "AWSService", "invokedBy": host}


def event(when: datetime, name: str, source: str, identity: dict[str, Any], account: str = ACCOUNT,
          region: str = REGION, read_only: bool = False, error: str | None = None, message: str | None = None,
          **fields: Any) -> dict[str, Any]:
    """An event at `when` for `account`/`region`; `error` and `message` make it a failure."""
    record = make_event(when, name, eventSource=source, userIdentity=identity, awsRegion=region,
                        recipientAccountId=account, readOnly=read_only, requestParameters=None)
    if error:
        record["errorCode"] = error
        record["errorMessage"] = message or f"{error} for {name}"
    elif message:
        record["errorMessage"] = message
    record.update(fields)
    return record


def console_login(when: datetime, identity: dict[str, Any], mfa: str = "No", success: bool = True,
                  account: str = ACCOUNT, **fields: Any) -> dict[str, Any]:
    record = event(when, "ConsoleLogin", "signin.amazonaws.com", identity, account=account,
                   eventType="AwsConsoleSignIn", additionalEventData={"LoginTo": "https://console.aws.amazon.com",
                                                                       "MobileVersion": "No", "MFAUsed": mfa},
                   responseElements={"ConsoleLogin": "Success" if success else "Failure"}, **fields)
    if not success:
        record["errorMessage"] = "Failed authentication"
    return record


def write_archive(source: Path, events: list[dict[str, Any]]) -> None:
    """CloudTrail files as the bucket holds them: per account, region and 5-minute delivery."""
    files: dict[tuple[str, str, datetime], list[dict[str, Any]]] = {}
    for record in events:
        moment = datetime.strptime(record["eventTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        delivered = moment.replace(minute=moment.minute - moment.minute % 5, second=0) + timedelta(minutes=5)
        files.setdefault((record["recipientAccountId"], record["awsRegion"], delivered), []).append(record)
    for (account, region, delivered), records in files.items():
        path = source / log_key(delivered, account, region, suffix=uuid.uuid4().hex[:16])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(json.dumps({"Records": records}).encode(), mtime=0))


def build_lake(folder: Path, events: list[dict[str, Any]]) -> Path:
    """Write the events as an archive under `folder/source` and ingest all of it into `folder/lake`."""
    write_archive(folder / "source", events)
    ingest(folder / "source", folder / "lake", workers=1)
    return folder / "lake"


def day_at(day: datetime, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return day + timedelta(hours=hour, minutes=minute, seconds=second)


def report_lake_events(day: datetime) -> list[dict[str, Any]]:
    """Three quiet days, then a day with a RunInstances spike, a StopLogging, denials and a failed sign-in."""
    deployer = assumed_role("deployer", "ci")
    attacker = assumed_role("ops", "stolen")
    events = [event(day - timedelta(days=d) + timedelta(hours=h, minutes=m), "RunInstances", "ec2.amazonaws.com",
                    deployer) for d in range(3, -1, -1) for h in range(24) for m in (7, 37)]
    for minute in range(6):
        events += [event(day + timedelta(hours=10, minutes=minute, seconds=s), "RunInstances", "ec2.amazonaws.com",
                         attacker, userAgent="evil-agent/1.0") for s in range(0, 60, 2)]
    events.append(event(day + timedelta(hours=21), "StopLogging", "cloudtrail.amazonaws.com", iam_user("niaj")))
    events += [event(day + timedelta(hours=12, minutes=i), "GetObject", "s3.amazonaws.com", iam_user("bob"),
                     read_only=True, error="AccessDenied") for i in range(3)]
    events.append(console_login(day + timedelta(hours=8), iam_user("mallory"), success=False))
    return events
