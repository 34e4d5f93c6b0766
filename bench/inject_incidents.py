"""Inject attack incidents of our own making into a CloudTrail archive (e.g. one written by
../shared/bench/independent_cloudtrail.py, whose copy injects none), to measure what the daily security report
and the spike detector find on incident days and how quiet they stay on ordinary ones.

Usage: python bench/inject_incidents.py --source /tmp/indep [--list]

Each incident is written as its own CloudTrail files (AWSLogs layout, one file per account, region and
5 minutes) beside the archive's, so a re-run overwrites them instead of adding more. `--list` prints the
incidents (day, account, what) as JSON for the measuring scripts.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

PROD, STAGING, DEV = "111122223333", "444455556666", "777788889999"
OUTSIDE = "193672423079"
ATTACKER_IP = "185.220.101.47"


def user(account: str, name: str) -> dict[str, Any]:
    return {"type": "IAMUser", "principalId": "AIDA" + name.upper().replace("-", ""), "userName": name,
            "arn": f"arn:aws:iam::{account}:user/{name}", "accountId": account, "accessKeyId": "AKIA" + "Q" * 16}


def role(account: str, name: str, session: str) -> dict[str, Any]:
    return {"type": "AssumedRole", "principalId": f"AROA{name.upper().replace('-', '')}:{session}",
            "arn": f"arn:aws:sts::{account}:assumed-role/{name}/{session}", "accountId": account,
            "accessKeyId": "ASIA" + "R" * 16,
            "sessionContext": {"sessionIssuer": {"type": "Role", "principalId": "AROA" + name.upper(),
                                                 "arn": f"arn:aws:iam::{account}:role/{name}", "accountId": account,
                                                 "userName": name},
                               "attributes": {"creationDate": "2024-05-01T00:00:00Z", "mfaAuthenticated": "false"}}}


def event(when: datetime, account: str, region: str, identity: dict[str, Any], source: str, name: str,
          params: Any = None, error: str | None = None, ip: str = ATTACKER_IP, read_only: bool = False,
          **extra: Any) -> dict[str, Any]:
    record = {"eventVersion": "1.09", "userIdentity": identity, "eventTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
              "eventSource": f"{source}.amazonaws.com", "eventName": name, "awsRegion": region,
              "sourceIPAddress": ip, "userAgent": "aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0",
              "requestParameters": params, "responseElements": None, "requestID": str(uuid.uuid4()),
              "eventID": str(uuid.uuid4()), "readOnly": read_only, "eventType": "AwsApiCall",
              "managementEvent": True, "recipientAccountId": account, "eventCategory": "Management"}
    if error:
        record["errorCode"] = error
        record["errorMessage"] = f"User is not authorized to perform {source}:{name}"
    record.update(extra)
    return record


RECON_APIS = [("iam", n) for n in ("ListUsers", "ListRoles", "ListPolicies", "GetAccountAuthorizationDetails",
                                   "ListAccessKeys", "ListGroups", "GetAccountSummary", "ListMFADevices")] + \
    [("ec2", n) for n in ("DescribeInstances", "DescribeSecurityGroups", "DescribeVpcs", "DescribeSnapshots",
                          "DescribeImages", "DescribeRegions", "DescribeKeyPairs", "DescribeVolumes")] + \
    [("s3", "ListBuckets"), ("lambda", "ListFunctions20150331"), ("secretsmanager", "ListSecrets"),
     ("ssm", "DescribeParameters"), ("rds", "DescribeDBInstances"), ("kms", "ListKeys"),
     ("cloudtrail", "DescribeTrails"), ("guardduty", "ListDetectors"), ("organizations", "DescribeOrganization"),
     ("sns", "ListTopics"), ("sqs", "ListQueues"), ("dynamodb", "ListTables"), ("ecr", "DescribeRepositories"),
     ("eks", "ListClusters"), ("logs", "DescribeLogGroups"), ("bedrock", "ListFoundationModels"),
     ("ses", "GetSendQuota"), ("route53", "ListHostedZones")]


def leaked_key(day: datetime, r: random.Random) -> list[dict[str, Any]]:
    """A leaked CI key: an hour of reconnaissance (half denied), then persistence and secret harvesting."""
    who = user(PROD, "ci-deployer")
    start = day.replace(hour=2, minute=10)
    events = [event(start, PROD, "us-east-1", who, "sts", "GetCallerIdentity", read_only=True)]
    for i in range(360):
        source, name = r.choice(RECON_APIS)
        error = "AccessDenied" if r.random() < 0.5 else None
        if source == "ec2" and error:
            error = "Client.UnauthorizedOperation"
        region = r.choice(["us-east-1", "us-east-1", "us-west-2", "eu-west-1"])
        events.append(event(start + timedelta(seconds=10 * i), PROD, region, who, source, name, error=error,
                            read_only=True))
    later = start + timedelta(hours=1, minutes=5)
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {
        "AWS": f"arn:aws:iam::{OUTSIDE}:root"}, "Action": "sts:AssumeRole"}]})
    events += [
        event(later, PROD, "us-east-1", who, "iam", "CreateUser", {"userName": "support-svc"}),
        event(later + timedelta(seconds=20), PROD, "us-east-1", who, "iam", "AttachUserPolicy",
              {"userName": "support-svc", "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}),
        event(later + timedelta(seconds=40), PROD, "us-east-1", who, "iam", "CreateAccessKey",
              {"userName": "support-svc"}),
        event(later + timedelta(seconds=60), PROD, "us-east-1", who, "iam", "UpdateAssumeRolePolicy",
              {"roleName": "OrganizationAccountAccessRole", "policyDocument": policy}),
        event(later + timedelta(seconds=80), PROD, "us-east-1", who, "cloudtrail", "PutEventSelectors",
              {"trailName": "org-trail", "eventSelectors": [{"readWriteType": "WriteOnly",
                                                             "includeManagementEvents": False}]}),
    ]
    events += [event(later + timedelta(minutes=3, seconds=5 * i), PROD, "us-east-1", who, "secretsmanager",
                     "GetSecretValue", {"secretId": f"prod/service-{i}/credentials"}, read_only=True)
               for i in range(25)]
    return events


def console_spray(day: datetime, r: random.Random) -> list[dict[str, Any]]:
    """700 failed console sign-ins in one hour from one address, most for names that do not exist."""
    events = []
    start = day.replace(hour=13)
    for i in range(700):
        name = f"admin{i % 12}" if i % 10 == 0 else "HIDDEN_DUE_TO_SECURITY_REASONS"
        identity = {"type": "IAMUser", "principalId": STAGING, "accountId": STAGING, "userName": name}
        record = event(start + timedelta(seconds=5 * i), STAGING, "us-east-1", identity, "signin", "ConsoleLogin",
                       eventType="AwsConsoleSignIn", responseElements={"ConsoleLogin": "Failure"},
                       additionalEventData={"LoginTo": "https://console.aws.amazon.com/console/home",
                                            "MobileVersion": "No", "MFAUsed": "No"})
        record["errorMessage"] = ("No username found in supplied account" if name.startswith("HIDDEN")
                                  else "Failed authentication")
        events.append(record)
    return events


def mining(day: datetime, r: random.Random) -> list[dict[str, Any]]:
    """Two hours of RunInstances in a quiet region, 40 % refused on vCPU limits."""
    who = role(DEV, "ci-runner", "gh-run-88123")
    start = day.replace(hour=20)
    events = []
    for i in range(240):
        error = "VcpuLimitExceeded" if r.random() < 0.4 else None
        events.append(event(start + timedelta(seconds=30 * i), DEV, "eu-central-1", who, "ec2", "RunInstances",
                            {"instanceType": "p3.16xlarge", "minCount": 1, "maxCount": 10}, error=error))
    return events


def exfiltration(day: datetime, r: random.Random) -> list[dict[str, Any]]:
    """Snapshots shared with an outside account, and model invocations by a role that never used Bedrock."""
    who = role(PROD, "AWSReservedSSO_PowerUser_1a2b", "jdoe@example.com")
    start = day.replace(hour=9, minute=30)
    events = [
        event(start, PROD, "us-east-1", who, "ec2", "ModifySnapshotAttribute",
              {"snapshotId": "snap-0a1b2c3d4e5f", "attributeType": "CREATE_VOLUME_PERMISSION",
               "createVolumePermission": {"add": {"items": [{"userId": OUTSIDE}]}}}),
        event(start + timedelta(minutes=2), PROD, "us-east-1", who, "rds", "ModifyDBSnapshotAttribute",
              {"dBSnapshotIdentifier": "orders-nightly", "attributeName": "restore", "valuesToAdd": [OUTSIDE]}),
    ]
    app = role(PROD, "app-api-role", "i-0f00ba7")
    events += [event(start + timedelta(minutes=10, seconds=6 * i), PROD, "us-east-1", app, "bedrock", "InvokeModel",
                     {"modelId": "anthropic.claude-3-opus-20240229-v1:0"}, ip="34.201.10.20") for i in range(400)]
    return events


def instance_takeover(day: datetime, r: random.Random) -> list[dict[str, Any]]:
    """Instance role credentials used from the instance and from outside, then SSM commands and a password."""
    creds = role(STAGING, "web-instance-profile", "i-0d3adb33fcafe0001")
    start = day.replace(hour=4)
    events = [event(start + timedelta(minutes=i), STAGING, "us-west-2", creds, "s3", "ListBuckets",
                    ip="54.212.33.9", read_only=True) for i in range(5)]
    events += [event(start + timedelta(hours=1, minutes=i), STAGING, "us-west-2", creds, name[0], name[1],
                     params, read_only=ro)
               for i, (name, params, ro) in enumerate([
                   (("sts", "GetCallerIdentity"), None, True),
                   (("ssm", "SendCommand"), {"documentName": "AWS-RunShellScript", "instanceIds": ["i-0aa"]}, False),
                   (("ec2", "GetPasswordData"), {"instanceId": "i-0win"}, True),
                   (("ec2-instance-connect", "SendSSHPublicKey"), {"instanceId": "i-0bb"}, False),
               ])]
    return events


INCIDENTS = {  # day of May 2024 -> (name, generator)
    15: ("leaked CI key: reconnaissance, admin user, trust-policy backdoor, trail blinded, 25 secrets read",
         leaked_key),
    18: ("snapshots shared with an outside account; first Bedrock use by an application role", exfiltration),
    22: ("700 console sign-in failures in one hour, mostly hidden user names", console_spray),
    25: ("RunInstances burst in quiet eu-central-1, 40 % vCPU-limit failures", mining),
    26: ("instance credentials used from outside; SSM command, password data, instance connect",
         instance_takeover),
}


def write(source: Path, name: str, events: list[dict[str, Any]]) -> int:
    files: dict[tuple[str, str, datetime], list[dict[str, Any]]] = {}
    for record in events:
        moment = datetime.strptime(record["eventTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        delivered = moment.replace(minute=moment.minute - moment.minute % 5, second=0) + timedelta(minutes=5)
        files.setdefault((record["recipientAccountId"], record["awsRegion"], delivered), []).append(record)
    for (account, region, delivered), records in files.items():
        folder = source / f"AWSLogs/{account}/CloudTrail/{region}/{delivered:%Y/%m/%d}"
        folder.mkdir(parents=True, exist_ok=True)
        stamp = f"{delivered:%Y%m%dT%H%MZ}"
        (folder / f"{account}_CloudTrail_{region}_{stamp}_incident{name}.json.gz").write_bytes(
            gzip.compress(json.dumps({"Records": records}).encode(), mtime=0))
    return len(events)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args()
    if args.list:
        print(json.dumps({f"2024-05-{day:02d}": name for day, (name, _) in INCIDENTS.items()}, indent=2))
        return
    for day, (name, make) in INCIDENTS.items():
        moment = datetime(2024, 5, day, tzinfo=UTC)
        count = write(args.source, f"{day:02d}", make(moment, random.Random(day)))
        print(f"2024-05-{day:02d}: {count} events, {name}")


if __name__ == "__main__":
    main()
