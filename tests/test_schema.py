"""The schema file is the single source: Arrow, DuckDB, Hive types and the docs all derive from it."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pytest

from trailsight.errors import SchemaError
from trailsight.schema import _parse_field, arrow_schema, hive_type, load_schema, markdown

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Column names of the Athena CloudTrail table AWS documents (cloudtrail.md §3).
ATHENA_COLUMNS = [
    "eventversion",
    "useridentity",
    "eventtime",
    "eventsource",
    "eventname",
    "awsregion",
    "sourceipaddress",
    "useragent",
    "errorcode",
    "errormessage",
    "requestparameters",
    "responseelements",
    "additionaleventdata",
    "requestid",
    "eventid",
    "readonly",
    "resources",
    "eventtype",
    "apiversion",
    "recipientaccountid",
    "serviceeventdetails",
    "sharedeventid",
    "vpcendpointid",
    "vpcendpointaccountid",
    "eventcategory",
    "addendum",
    "sessioncredentialfromconsole",
    "edgedevicedetails",
    "tlsdetails",
]


def test_lake_keeps_the_athena_column_names_and_nesting() -> None:
    schema = arrow_schema(load_schema())
    assert [n for n in schema.names if n in ATHENA_COLUMNS] == ATHENA_COLUMNS
    identity = schema.field("useridentity").type
    issuer = identity.field("sessioncontext").type.field("sessionissuer").type
    assert [issuer.field(i).name for i in range(issuer.num_fields)] == [
        "type",
        "principalid",
        "arn",
        "accountid",
        "username",
    ]
    assert schema.field("resources").type.value_type.field("arn").type == pa.string()


def test_improved_types() -> None:
    schema = arrow_schema(load_schema())
    assert schema.field("eventtime").type == pa.timestamp("us", tz="UTC")
    assert schema.field("readonly").type == pa.bool_() and schema.field("managementevent").type == pa.bool_()
    for name in (
        "requestparameters",
        "responseelements",
        "additionaleventdata",
        "serviceeventdetails",
        "edgedevicedetails",
    ):
        assert schema.field(name).type == pa.string()
    assert {"extrafields", "sourcekey", "eventhash"} <= set(schema.names)
    assert schema.metadata[b"trailsight.schema"] == b"cloudtrail.v1"


def test_partitions_are_event_date_account_region() -> None:
    assert [p.name for p in load_schema().partitions] == ["event_date", "account"]
    assert [c.name for c in load_schema().clustering] == ["region"]


def test_hive_type_of_nested_struct() -> None:
    addendum = next(c for c in load_schema().columns if c.name == "addendum")
    assert hive_type(addendum) == (
        "struct<reason:string,updatedfields:string,originalrequestid:string,originaleventid:string>"
    )


def test_docs_are_generated_from_the_schema() -> None:
    docs = (PROJECT_ROOT / "docs" / "schema.md").read_text()
    assert docs == markdown(load_schema()), "docs/schema.md is stale: run `trailsight schema > docs/schema.md`"
    for column in load_schema().columns:
        assert re.search(rf"\| `{column.name}` \|", docs)


def test_unknown_type_in_schema_file_is_a_clear_error() -> None:
    with pytest.raises(SchemaError, match="unknown type 'strnig'"):
        _parse_field({"name": "x", "type": "strnig"}, "test.yaml:x")


def test_schema_file_is_versioned() -> None:
    assert (Path(PROJECT_ROOT) / "schemas" / "cloudtrail.v1.yaml").exists()
    assert load_schema().version == 1
