"""Request/response builders: each fills one API's requestParameters, responseElements, resources, extra data."""

from __future__ import annotations

from typing import Any

import orjson

from trailsight.synth.primitives import _b64, _hex, _key_id, _read_data, _uuid4
from trailsight.synth.world import _APPS, _ATTACHED_POLICIES, _GIVEN, _READ_POLICIES, HOME_REGION, Builder, _Actor, _Ctx


def _arn(ctx: _Ctx, service: str, resource: str) -> str:
    return f"arn:aws:{service}:{ctx.region}:{ctx.acct.id}:{resource}"


def _res(arn: str, acct: str, typ: str) -> list[dict[str, str]]:
    return [{"accountId": acct, "type": typ, "ARN": arn}]


def _b_assume_role(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    role = ctx.pick(ctx.pools.app_roles)
    if actor.kind == "AWSService":
        session = {
            "lambda.amazonaws.com": role.split("-role")[0],
            "ec2.amazonaws.com": f"i-0{_hex(ctx.rng, 16)}",
            "ecs-tasks.amazonaws.com": _hex(ctx.rng, 32),
        }.get(actor.name, f"{actor.name.split('.')[0]}-session")
    else:
        session = f"{actor.name}-{int(ctx.r() * 1e10)}"
    arn = ctx.role_arn(role)
    rp = {"roleArn": arn, "roleSessionName": session}
    if ctx.r() < 0.5:
        rp["durationSeconds"] = 3600
    return rp, ctx.credentials(role, session), _res(arn, ctx.acct.id, "AWS::IAM::Role"), None


def _b_assume_saml(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    role = actor.extra["role"]
    email = ctx.pick(actor.sessions)
    arn = ctx.role_arn(role)
    provider = f"arn:aws:iam::{ctx.acct.id}:saml-provider/{actor.extra['provider']}"
    rp = {
        "sAMLAssertionID": "id" + _hex(ctx.rng, 24),
        "roleSessionName": email,
        "principalArn": provider,
        "roleArn": arn,
        "durationSeconds": 3600,
    }
    re = ctx.credentials(role, email)
    re.update(
        {
            "packedPolicySize": 3,
            "subject": email,
            "subjectType": "unspecified",
            "issuer": "http://www.okta.com/exk1a2b3c4d5e6f7g8h9",
            "audience": "https://signin.aws.amazon.com/saml",
            "nameQualifier": actor.principal_id,
        }
    )
    return (
        rp,
        re,
        _res(arn, ctx.acct.id, "AWS::IAM::Role") + _res(provider, ctx.acct.id, "AWS::IAM::SAMLProvider"),
        None,
    )


def _b_assume_web(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    role = actor.extra["role"]
    session = "GitHubActions" if "github" in actor.extra["provider"] else f"botocore-session-{int(ctx.r() * 1e10)}"
    arn = ctx.role_arn(role)
    rp = {"roleArn": arn, "roleSessionName": session, "durationSeconds": 3600}
    re = ctx.credentials(role, session)
    re.update(
        {
            "subjectFromWebIdentityToken": ctx.pick(actor.sessions),
            "provider": actor.extra["provider"],
            "audience": actor.extra["aud"],
        }
    )
    return rp, re, _res(arn, ctx.acct.id, "AWS::IAM::Role"), None


def _b_federation_token(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    name = f"analyst-{1 + int(ctx.r() * 3)}"
    rp = {"name": name, "durationSeconds": 43200}
    re = {
        "credentials": {
            "accessKeyId": _key_id(ctx.rng, "ASIA", 16),
            "sessionToken": "IQoJb3JpZ2luX2VjE" + _b64(ctx.rng, 300),
            "expiration": "in 12 hours",
        },
        "federatedUser": {
            "federatedUserId": f"{ctx.acct.id}:{name}",
            "arn": f"arn:aws:sts::{ctx.acct.id}:federated-user/{name}",
        },
        "packedPolicySize": 6,
    }
    return rp, re, None, None


def _b_none(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return None, None, None, None


def _b_kms(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    key = ctx.pick(ctx.pools.keys)
    arn = f"arn:aws:kms:{ctx.region}:{ctx.acct.id}:key/{key}"
    host = actor.name if actor.kind == "AWSService" else ""
    if host.startswith("s3") or (not host and ctx.r() < 0.3):
        enc = {"aws:s3:arn": f"arn:aws:s3:::{ctx.pick(ctx.pools.buckets)}/{_hex(ctx.rng, 12)}.parquet"}
    elif host.startswith("secretsmanager"):
        enc = {
            "SecretARN": _arn(ctx, "secretsmanager", "secret:" + ctx.pick(ctx.pools.secrets)),
            "SecretVersionId": _uuid4(ctx.rng),
        }
    elif host.startswith("ec2"):
        enc = {"aws:ebs:id": ctx.pick(ctx.pools.volumes)}
    elif host.startswith("lambda"):
        enc = {"aws:lambda:FunctionArn": _arn(ctx, "lambda", "function:" + ctx.pick(ctx.pools.functions))}
    else:
        enc = {"aws:dynamodb:tableName": ctx.pick(ctx.pools.tables), "aws:dynamodb:subscriberId": ctx.acct.id}
    rp: dict[str, Any] = {"encryptionAlgorithm": "SYMMETRIC_DEFAULT", "encryptionContext": enc}
    if ctx.r() < 0.5:
        rp["keyId"] = arn
    return rp, None, _res(arn, ctx.acct.id, "AWS::KMS::Key"), None


def _b_kms_datakey(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    rp, _, res, _ = _b_kms(ctx, actor)
    rp.pop("encryptionAlgorithm", None)
    rp["keyId"] = res[0]["ARN"]
    rp["keySpec"] = "AES_256"
    return rp, None, res, None


def _s3_extra(ctx: _Ctx, out_bytes: float, in_bytes: float) -> dict[str, Any]:
    return {
        "SignatureVersion": "SigV4",
        "CipherSuite": "TLS_AES_128_GCM_SHA256",
        "bytesTransferredIn": in_bytes,
        "AuthenticationMethod": "AuthHeader",
        "x-amz-id-2": _b64(ctx.rng, 57),
        "bytesTransferredOut": out_bytes,
    }


def _object_key(ctx: _Ctx) -> str:
    y, m, d = ctx.day_prefix.split("-")
    return f"{ctx.pick(_APPS)}/{y}/{m}/{d}/{_hex(ctx.rng, 16)}.{ctx.pick(('json.gz', 'parquet', 'csv', 'png'))}"


def _b_s3_object(ctx: _Ctx, actor: _Actor, put: bool = False) -> tuple[Any, Any, Any, Any]:
    bucket = ctx.pick(ctx.pools.buckets)
    key = _object_key(ctx)
    size = float(int(ctx.r() ** 3 * 5_000_000) + 120)
    rp = {"bucketName": bucket, "Host": f"{bucket}.s3.{ctx.region}.amazonaws.com", "key": key}
    res = [
        {"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::{bucket}/{key}"},
        {"accountId": ctx.acct.id, "type": "AWS::S3::Bucket", "ARN": f"arn:aws:s3:::{bucket}"},
    ]
    if put:
        rp["x-amz-server-side-encryption"] = "aws:kms"
        key_arn = _arn(ctx, "kms", f"key/{ctx.pick(ctx.pools.keys)}")
        re = {
            "x-amz-server-side-encryption-aws-kms-key-id": key_arn,
            "x-amz-server-side-encryption": "aws:kms",
            "x-amz-server-side-encryption-bucket-key-enabled": "true",
        }
        return rp, re, res, _s3_extra(ctx, 0.0, size)
    return rp, None, res, _s3_extra(ctx, size, 0.0)


def _b_s3_put(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return _b_s3_object(ctx, actor, put=True)


def _b_s3_bucket(ctx: _Ctx, actor: _Actor, sub: str) -> tuple[Any, Any, Any, Any]:
    bucket = ctx.pick(ctx.pools.buckets)
    rp = {"bucketName": bucket, "Host": f"{bucket}.s3.{ctx.region}.amazonaws.com", sub: ""}
    res = _res(f"arn:aws:s3:::{bucket}", ctx.acct.id, "AWS::S3::Bucket")
    return (
        rp,
        None,
        res,
        {
            "SignatureVersion": "SigV4",
            "CipherSuite": "TLS_AES_128_GCM_SHA256",
            "bytesTransferredIn": 0,
            "AuthenticationMethod": "AuthHeader",
            "x-amz-id-2": _b64(ctx.rng, 57),
            "bytesTransferredOut": 0,
        },
    )


def _bucket_builder(sub: str) -> Builder:
    return lambda ctx, actor: _b_s3_bucket(ctx, actor, sub)


def _b_list_buckets(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return (
        {"Host": f"s3.{ctx.region}.amazonaws.com"},
        None,
        None,
        {
            "SignatureVersion": "SigV4",
            "CipherSuite": "TLS_AES_128_GCM_SHA256",
            "bytesTransferredIn": 0,
            "AuthenticationMethod": "AuthHeader",
            "x-amz-id-2": _b64(ctx.rng, 57),
            "bytesTransferredOut": 3211,
        },
    )


def _policy_document(ctx: _Ctx, statements: int) -> str:
    stmts = []
    for i in range(statements):
        bucket = ctx.pick(ctx.pools.buckets)
        stmts.append(
            {
                "Sid": f"Stmt{i}{_hex(ctx.rng, 6)}",
                "Effect": "Allow",
                "Action": [
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:ListBucket",
                    "kms:Decrypt",
                    "kms:GenerateDataKey",
                ],
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/{ctx.pick(_APPS)}/*"],
                "Condition": {
                    "StringEquals": {
                        "aws:PrincipalOrgID": ctx.world.org_id,
                        "aws:SourceVpce": f"vpce-0{_hex(ctx.rng, 16)}",
                    }
                },
            }
        )
    return orjson.dumps({"Version": "2012-10-17", "Statement": stmts}).decode()


def _b_put_bucket_policy(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    bucket = ctx.pick(ctx.pools.buckets)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }
    rp = {
        "bucketPolicy": policy,
        "bucketName": bucket,
        "Host": f"{bucket}.s3.{ctx.region}.amazonaws.com",
        "policy": "",
    }
    return (
        rp,
        None,
        _res(f"arn:aws:s3:::{bucket}", ctx.acct.id, "AWS::S3::Bucket"),
        {
            "SignatureVersion": "SigV4",
            "CipherSuite": "TLS_AES_128_GCM_SHA256",
            "bytesTransferredIn": 312,
            "AuthenticationMethod": "AuthHeader",
            "x-amz-id-2": _b64(ctx.rng, 57),
            "bytesTransferredOut": 0,
        },
    )


def _b_create_bucket(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    bucket = f"{ctx.acct.name}-{ctx.pick(_APPS)}-tmp-{_hex(ctx.rng, 8)}"
    rp = {
        "CreateBucketConfiguration": {
            "LocationConstraint": ctx.region,
            "xmlns": "http://s3.amazonaws.com/doc/2006-03-01/",
        },
        "bucketName": bucket,
        "Host": f"{bucket}.s3.{ctx.region}.amazonaws.com",
    }
    return rp, None, _res(f"arn:aws:s3:::{bucket}", ctx.acct.id, "AWS::S3::Bucket"), None


def _ec2_filter(ctx: _Ctx) -> dict[str, Any]:
    if ctx.r() < 0.5:
        return {}
    return {"items": [{"name": "tag:app", "valueSet": {"items": [{"value": ctx.pick(_APPS)}]}}]}


# Chance that a call of the API carries a huge request, by kind (apis.yaml, big_request_share).
_BIG_SHARE: dict[str, float] = dict(_read_data("apis.yaml")["big_request_share"])


def _b_describe(set_name: str, pool: str | None = None, big: bool = False) -> Builder:
    """ec2 Describe*: mostly filters, sometimes one id, rarely (``big``) a list of thousands of ids."""
    id_key, id_prefix = ("instanceId", "i") if pool == "instances" else ("volumeId", "vol")

    def many_ids(ctx: _Ctx) -> dict[str, Any]:
        count = 800 + int(ctx.r() * 1400)
        return {"items": [{id_key: f"{id_prefix}-0{_hex(ctx.rng, 16)}"} for _ in range(count)]}

    def build(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
        items: Any = {}
        if pool is not None and ctx.r() < 0.3:
            items = {"items": [{id_key: ctx.pick(getattr(ctx.pools, pool))}]}
        if big and ctx.r() < _BIG_SHARE[set_name]:
            items = ctx.big(set_name, lambda: many_ids(ctx))
        rp: dict[str, Any] = {set_name: items} if set_name else {}
        rp["filterSet"] = _ec2_filter(ctx)
        if ctx.r() < 0.3:
            rp["maxResults"] = 1000
        return rp, None, None, None

    return build


def _b_describe_sg(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    rp: dict[str, Any] = {"securityGroupSet": {}, "securityGroupIdSet": {}, "filterSet": _ec2_filter(ctx)}
    if ctx.r() < 0.4:
        rp["securityGroupIdSet"] = {"items": [{"groupId": ctx.pick(ctx.pools.sgs)}]}
    return rp, None, None, None


def _b_describe_ni(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return (
        {
            "networkInterfaceIdSet": {},
            "filterSet": {
                "items": [{"name": "subnet-id", "valueSet": {"items": [{"value": ctx.pick(ctx.pools.subnets)}]}}]
            },
        },
        None,
        None,
        None,
    )


def _b_run_instances(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    itype = ctx.pick(("t3.micro", "t3.medium", "m6i.large", "c6g.xlarge", "r6i.2xlarge"))
    ami = ctx.pick(ctx.pools.amis)
    sg = ctx.pick(ctx.pools.sgs)
    subnet = ctx.pick(ctx.pools.subnets)
    iid = f"i-0{_hex(ctx.rng, 16)}"
    rp = {
        "instancesSet": {"items": [{"imageId": ami, "minCount": 1, "maxCount": 1}]},
        "instanceType": itype,
        "blockDeviceMapping": {},
        "monitoring": {"enabled": False},
        "disableApiTermination": False,
        "disableApiStop": False,
        "clientToken": _uuid4(ctx.rng),
        "networkInterfaceSet": {
            "items": [{"deviceIndex": 0, "subnetId": subnet, "groupSet": {"items": [{"groupId": sg}]}}]
        },
        "tagSpecificationSet": {
            "items": [
                {
                    "resourceType": "instance",
                    "tags": [
                        {"key": "app", "value": ctx.pick(_APPS)},
                        {"key": "env", "value": ctx.acct.name},
                    ],
                }
            ]
        },
    }
    re = {
        "requestId": _uuid4(ctx.rng),
        "reservationId": f"r-0{_hex(ctx.rng, 16)}",
        "ownerId": ctx.acct.id,
        "groupSet": {},
        "instancesSet": {
            "items": [
                {
                    "instanceId": iid,
                    "imageId": ami,
                    "currentInstanceBootMode": "uefi",
                    "instanceState": {"code": 0, "name": "pending"},
                    "privateDnsName": f"ip-10-0-{int(ctx.r() * 255)}-{int(ctx.r() * 255)}.ec2.internal",
                    "amiLaunchIndex": 0,
                    "productCodes": {},
                    "instanceType": itype,
                    "launchTime": 1700000000000,
                    "placement": {"availabilityZone": f"{ctx.region}a", "tenancy": "default"},
                    "monitoring": {"state": "disabled"},
                    "subnetId": subnet,
                    "vpcId": ctx.pick(ctx.pools.vpcs),
                    "privateIpAddress": f"10.0.{int(ctx.r() * 255)}.{int(ctx.r() * 255)}",
                    "stateReason": {"code": "pending", "message": "pending"},
                    "architecture": "x86_64",
                    "rootDeviceType": "ebs",
                    "rootDeviceName": "/dev/xvda",
                    "blockDeviceMapping": {},
                    "virtualizationType": "hvm",
                    "hypervisor": "xen",
                    "groupSet": {"items": [{"groupId": sg, "groupName": "app"}]},
                    "ebsOptimized": False,
                    "enaSupport": True,
                    "capacityReservationSpecification": {"capacityReservationPreference": "open"},
                    "maintenanceOptions": {"autoRecovery": "default"},
                }
            ]
        },
        "requesterId": None,
    }
    re.pop("requesterId")
    return rp, re, None, None


def _b_instances_state(name: str) -> Builder:
    def build(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
        iid = ctx.pick(ctx.pools.instances)
        rp = {"instancesSet": {"items": [{"instanceId": iid}]}}
        if name != "TerminateInstances":
            rp["force"] = False
        new = {
            "StopInstances": (64, "stopping"),
            "StartInstances": (0, "pending"),
            "TerminateInstances": (32, "shutting-down"),
        }[name]
        re = {
            "requestId": _uuid4(ctx.rng),
            "instancesSet": {
                "items": [
                    {
                        "instanceId": iid,
                        "currentState": {"code": new[0], "name": new[1]},
                        "previousState": {"code": 16, "name": "running"},
                    }
                ]
            },
        }
        return rp, re, None, None

    return build


def _b_create_tags(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    rp = {
        "resourcesSet": {"items": [{"resourceId": ctx.pick(ctx.pools.instances)}]},
        "tagSet": {"items": [{"key": "owner", "value": ctx.pick(_GIVEN)}, {"key": "app", "value": ctx.pick(_APPS)}]},
    }
    return rp, {"requestId": _uuid4(ctx.rng), "_return": True}, None, None


def _ip_permissions(port: int, cidr: str, description: str) -> dict[str, Any]:
    return {
        "items": [
            {
                "ipProtocol": "tcp",
                "fromPort": port,
                "toPort": port,
                "groups": {},
                "ipRanges": {"items": [{"cidrIp": cidr, "description": description}]},
                "ipv6Ranges": {},
                "prefixListIds": {},
            }
        ]
    }


def _b_sg_ingress(
    ctx: _Ctx, actor: _Actor, cidr: str | None = None, port: int | None = None, revoke: bool = False
) -> tuple[Any, Any, Any, Any]:
    sg = ctx.pick(ctx.pools.sgs)
    port = port or ctx.pick((443, 5432, 6379, 8080, 3306))
    cidr = cidr or ctx.pick(("10.0.0.0/16", "10.20.0.0/16", "172.16.0.0/12", "10.0.32.0/20"))
    rp = {"groupId": sg, "ipPermissions": _ip_permissions(port, cidr, "" if revoke else "internal")}
    if revoke:
        return rp, {"requestId": _uuid4(ctx.rng), "_return": True}, None, None
    re = {
        "requestId": _uuid4(ctx.rng),
        "_return": True,
        "securityGroupRuleSet": {
            "items": [
                {
                    "groupOwnerId": ctx.acct.id,
                    "groupId": sg,
                    "securityGroupRuleId": f"sgr-0{_hex(ctx.rng, 16)}",
                    "isEgress": False,
                    "ipProtocol": "tcp",
                    "fromPort": port,
                    "toPort": port,
                    "cidrIpv4": cidr,
                }
            ]
        },
    }
    return rp, re, None, None


def _b_sg_revoke(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return _b_sg_ingress(ctx, actor, revoke=True)


def _b_create_sg(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    name = f"{ctx.pick(_APPS)}-{_hex(ctx.rng, 6)}"
    rp = {
        "groupName": name,
        "groupDescription": f"{name} managed by terraform",
        "vpcId": ctx.pick(ctx.pools.vpcs),
    }
    return (
        rp,
        {"requestId": _uuid4(ctx.rng), "_return": True, "groupId": f"sg-0{_hex(ctx.rng, 16)}"},
        None,
        None,
    )


def _b_iam_role(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return {"roleName": ctx.pick(ctx.pools.roles)}, None, None, None


def _b_iam_list(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return ({"maxItems": 1000} if ctx.r() < 0.5 else None), None, None, None


def _b_iam_policy_version(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return (
        {
            "policyArn": "arn:aws:iam::aws:policy/" + ctx.pick(_READ_POLICIES),
            "versionId": f"v{1 + int(ctx.r() * 9)}",
        },
        None,
        None,
        None,
    )


def _b_create_user(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    name = f"svc-{ctx.pick(_APPS)}-{_hex(ctx.rng, 6)}"
    re = {
        "user": {
            "path": "/",
            "userName": name,
            "userId": _key_id(ctx.rng, "AIDA", 17),
            "arn": f"arn:aws:iam::{ctx.acct.id}:user/{name}",
            "createDate": "Jan 1, 2024, 12:00:00 PM",
        }
    }
    return {"userName": name}, re, None, None


def _b_create_access_key(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    user = ctx.pick(ctx.pools.users)
    re = {
        "accessKey": {
            "userName": user,
            "accessKeyId": _key_id(ctx.rng, "AKIA", 16),
            "status": "Active",
            "createDate": "Jan 1, 2024, 12:00:00 PM",
        }
    }
    return {"userName": user}, re, None, None


def _b_attach_role_policy(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return (
        {
            "roleName": ctx.pick(ctx.pools.roles),
            "policyArn": "arn:aws:iam::aws:policy/" + ctx.pick(_ATTACHED_POLICIES),
        },
        None,
        None,
        None,
    )


def _b_put_role_policy(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    role = ctx.pick(ctx.pools.roles)
    if ctx.r() < _BIG_SHARE["policy"]:
        doc = ctx.big("policy", lambda: _policy_document(ctx, 60 + int(ctx.r() * 80)))
    else:
        doc = _policy_document(ctx, 1 + int(ctx.r() * 3))
    return {"roleName": role, "policyName": f"{role}-inline", "policyDocument": doc}, None, None, None


def _b_create_policy(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    name = f"{ctx.pick(_APPS)}-access-{_hex(ctx.rng, 6)}"
    doc = (
        ctx.big("policy", lambda: _policy_document(ctx, 60 + int(ctx.r() * 80)))
        if ctx.r() < _BIG_SHARE["policy"]
        else _policy_document(ctx, 2)
    )
    re = {
        "policy": {
            "policyName": name,
            "policyId": _key_id(ctx.rng, "ANPA", 17),
            "arn": f"arn:aws:iam::{ctx.acct.id}:policy/{name}",
            "path": "/",
            "defaultVersionId": "v1",
            "attachmentCount": 0,
            "permissionsBoundaryUsageCount": 0,
            "isAttachable": True,
            "createDate": "Jan 1, 2024, 12:00:00 PM",
            "updateDate": "Jan 1, 2024, 12:00:00 PM",
        }
    }
    return {"policyName": name, "policyDocument": doc}, re, None, None


def _b_lambda_fn(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return {"functionName": ctx.pick(ctx.pools.functions)}, None, None, None


def _b_lambda_update(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    fn = ctx.pick(ctx.pools.functions)
    arn = f"arn:aws:lambda:{ctx.region}:{ctx.acct.id}:function:{fn}"
    rp = {
        "functionName": fn,
        "s3Bucket": ctx.pick(ctx.pools.buckets),
        "s3Key": f"builds/{fn}/{_hex(ctx.rng, 40)}.zip",
        "publish": True,
        "dryRun": False,
    }
    re = {
        "functionName": fn,
        "functionArn": arn,
        "runtime": "python3.12",
        "role": ctx.role_arn(ctx.pick(ctx.pools.roles)),
        "handler": "app.handler",
        "codeSize": int(ctx.r() * 5e6),
        "description": "",
        "timeout": 30,
        "memorySize": 512,
        "lastModified": ctx.day_prefix + "T12:00:00.000+0000",
        "codeSha256": _b64(ctx.rng, 32),
        "version": str(1 + int(ctx.r() * 200)),
        "tracingConfig": {"mode": "PassThrough"},
        "revisionId": _uuid4(ctx.rng),
        "state": "Active",
        "lastUpdateStatus": "InProgress",
        "packageType": "Zip",
        "architectures": ["arm64"],
        "ephemeralStorage": {"size": 512},
    }
    return rp, re, None, None


def _b_invoke(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    fn = ctx.pick(ctx.pools.functions)
    arn = f"arn:aws:lambda:{ctx.region}:{ctx.acct.id}:function:{fn}"
    return (
        {
            "functionName": arn,
            "invocationType": ctx.pick(("RequestResponse", "Event")),
            "sourceArn": f"arn:aws:events:{ctx.region}:{ctx.acct.id}:rule/{fn}-schedule",
        },
        None,
        _res(arn, ctx.acct.id, "AWS::Lambda::Function"),
        None,
    )


def _b_ddb_item(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    table = ctx.pick(ctx.pools.tables)
    arn = f"arn:aws:dynamodb:{ctx.region}:{ctx.acct.id}:table/{table}"
    return (
        {"tableName": table, "key": {"pk": "HIDDEN_DUE_TO_SECURITY_REASONS"}, "consistentRead": False},
        None,
        _res(arn, ctx.acct.id, "AWS::DynamoDB::Table"),
        None,
    )


def _b_ddb_query(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    table = ctx.pick(ctx.pools.tables)
    arn = f"arn:aws:dynamodb:{ctx.region}:{ctx.acct.id}:table/{table}"
    return (
        {
            "tableName": table,
            "keyConditionExpression": "pk = :pk",
            "limit": 100,
            "select": "ALL_ATTRIBUTES",
            "expressionAttributeValues": {":pk": "HIDDEN_DUE_TO_SECURITY_REASONS"},
        },
        None,
        _res(arn, ctx.acct.id, "AWS::DynamoDB::Table"),
        None,
    )


def _b_ddb_table(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return {"tableName": ctx.pick(ctx.pools.tables)}, None, None, None


def _b_logs_stream(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    y, m, d = ctx.day_prefix.split("-")
    return (
        {
            "logGroupName": ctx.pick(ctx.pools.log_groups),
            "logStreamName": f"{y}/{m}/{d}/[$LATEST]{_hex(ctx.rng, 32)}",
        },
        None,
        None,
        None,
    )


def _b_logs_groups(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return ({"logGroupNamePrefix": "/aws/lambda/"} if ctx.r() < 0.5 else {"limit": 50}), None, None, None


def _b_logs_retention(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return (
        {"logGroupName": ctx.pick(ctx.pools.log_groups), "retentionInDays": ctx.pick((14, 30, 90, 365))},
        None,
        None,
        None,
    )


def _b_ssm_param(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return {"name": ctx.pick(ctx.pools.params), "withDecryption": ctx.r() < 0.6}, None, None, None


def _b_ssm_params(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    names = [ctx.pick(ctx.pools.params) for _ in range(1 + int(ctx.r() * 9))]
    return {"names": names, "withDecryption": True}, None, None, None


def _b_ssm_update(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return (
        {
            "instanceId": ctx.pick(ctx.pools.instances),
            "agentVersion": "3.3.131.0",
            "agentStatus": "Active",
            "platformType": "Linux",
            "platformName": "Amazon Linux",
            "platformVersion": "2023",
            "iPAddress": f"10.0.{int(ctx.r() * 255)}.{int(ctx.r() * 255)}",
            "computerName": "ip-10-0-1-1.ec2.internal",
            "agentName": "amazon-ssm-agent",
            "availabilityZone": f"{ctx.region}a",
            "availabilityZoneId": "use1-az1",
        },
        None,
        None,
        None,
    )


def _b_ssm_describe(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return {"maxResults": 50}, None, None, None


def _b_secret(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    arn = f"arn:aws:secretsmanager:{ctx.region}:{ctx.acct.id}:secret:{ctx.pick(ctx.pools.secrets)}"
    return {"secretId": arn}, None, None, None


def _b_rotation(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    arn = f"arn:aws:secretsmanager:{ctx.region}:{ctx.acct.id}:secret:{ctx.pick(ctx.pools.secrets)}"
    return None, None, _res(arn, ctx.acct.id, "AWS::SecretsManager::Secret"), None


def _b_alarms(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    if ctx.r() < 0.5:
        return {"alarmNames": [ctx.pick(ctx.pools.alarms)]}, None, None, None
    return {"maxRecords": 100, "alarmTypes": ["CompositeAlarm", "MetricAlarm"]}, None, None, None


def _b_put_evaluations(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    def evaluations(n: int) -> list[dict[str, Any]]:
        return [
            {
                "complianceResourceType": "AWS::EC2::Instance",
                "complianceResourceId": f"i-0{_hex(ctx.rng, 16)}",
                "complianceType": ctx.pick(("COMPLIANT", "NON_COMPLIANT")),
                "annotation": "Evaluated by custom rule",
                "orderingTimestamp": ctx.day_prefix + "T00:00:00Z",
            }
            for _ in range(n)
        ]

    if ctx.r() < _BIG_SHARE["evaluations"]:
        evals = ctx.big("evaluations", lambda: evaluations(100))
    else:
        evals = evaluations(1 + int(ctx.r() * 3))
    return (
        {"evaluations": evals, "resultToken": _b64(ctx.rng, 96), "testMode": False},
        {"failedEvaluations": []},
        None,
        None,
    )


def _b_config_rules(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return {"configRuleNames": [ctx.pick(ctx.pools.config_rules)]}, None, None, None


def _b_gd(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    rp: dict[str, Any] = {"detectorId": ctx.pools.detector}
    if ctx.r() < 0.5:
        rp["findingCriteria"] = {"criterion": {"service.archived": {"eq": ["false"]}}}
        rp["maxResults"] = 50
    return rp, None, None, None


def _b_gd_findings(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return (
        {
            "detectorId": ctx.pools.detector,
            "findingIds": [_hex(ctx.rng, 32) for _ in range(1 + int(ctx.r() * 5))],
        },
        None,
        None,
        None,
    )


def _b_trail(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    arn = f"arn:aws:cloudtrail:{HOME_REGION}:{ctx.acct.id}:trail/{ctx.acct.trail_name}"
    return {"name": arn}, None, None, None


def _b_describe_trails(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return {"includeShadowTrails": True}, None, None, None


def _b_lookup(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return (
        {
            "lookupAttributes": [
                {"attributeKey": "EventName", "attributeValue": ctx.pick(("ConsoleLogin", "RunInstances"))}
            ],
            "maxResults": 50,
        },
        None,
        None,
        None,
    )


def _b_console_login(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    aed: dict[str, Any] = {
        "LoginTo": "https://console.aws.amazon.com/console/home?hashArgs=%23&isauthcode=true&state=hashArgsFromTB_us-east-1_"
        + _hex(ctx.rng, 16),
        "MobileVersion": "No",
        "MFAUsed": "No",
    }
    if actor.kind == "IAMUser" or (actor.kind == "Root" and actor.mfa):
        aed["MFAIdentifier"] = (
            f"arn:aws:iam::{ctx.acct.id}:mfa/{actor.name}"
            if actor.kind == "IAMUser"
            else f"arn:aws:iam::{ctx.acct.id}:mfa/root-account-mfa-device"
        )
        aed["MFAUsed"] = "Yes"
    elif actor.extra.get("saml"):
        aed["SamlProviderArn"] = f"arn:aws:iam::{ctx.acct.id}:saml-provider/Okta"
    return None, {"ConsoleLogin": "Success"}, None, aed


def _b_sso_role(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return (
        {"accountId": ctx.pick([a.id for a in ctx.world.accounts[:3]]), "roleName": "AdministratorAccess"},
        None,
        None,
        None,
    )


def _b_kms_rotate(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    key = ctx.pick(ctx.pools.keys)
    return (
        None,
        None,
        _res(f"arn:aws:kms:{ctx.region}:{ctx.acct.id}:key/{key}", ctx.acct.id, "AWS::KMS::Key"),
        None,
    )


def _b_regions(ctx: _Ctx, actor: _Actor) -> tuple[Any, Any, Any, Any]:
    return {"regionSet": {}, "allRegions": ctx.r() < 0.3}, None, None, None
