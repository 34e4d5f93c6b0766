"""Stage 2, conversion: one CloudTrail object's bytes to Arrow rows of the lake schema, losslessly.

Every event becomes one row. Values the typed columns cannot hold exactly (unknown fields at any depth,
explicit nulls, values of an unexpected type, time strings in a non-canonical form) go into the
`extrafields` JSON merge patch, so `rebuild_event(row) == original event` for every event accepted.
Input that is not CloudTrail goes to quarantine with a reason instead of stopping the run.
"""

from __future__ import annotations

import json
import re
import sys
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache
from json.decoder import scanstring
from typing import Any

import msgspec
import numpy as np
import orjson
import pyarrow as pa
import xxhash
from isal import isal_zlib

from trailsight.convert.typed import (
    DECODE_ERRORS,
    INSIGHT_EVENT_TYPE,
    KEY_END,
    NO_PATCH,
    NOTIFICATION_SOURCE_PREFIX,
    Origin,
    Source,
    TypedBatch,
    key_ends,
    split_records,
)
from trailsight.errors import BadInput
from trailsight.schema import Field, TableSchema, converted_schema, load_schema

DEFAULT_MAX_UNCOMPRESSED = 512 * 1024 * 1024
SAFE_PARTITION_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
UNKNOWN = "unknown"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROS_PER_DAY = 86_400_000_000
CLOUDTRAIL_TABLE = "cloudtrail"
INSIGHTS_TABLE = "cloudtrail_insights"

Partition = tuple[str, date, str]
"""(table, event date, account): a folder of the lake."""
Place = tuple[str, date, str, str]
"""(table, event date, account, region): where a converted row belongs; its partition is the first three."""
REGION = "region"
"""The column, set from each row's place, that the lake's files are sorted by (the schema's clustering)."""
_MISSING = object()


# --- decoding -------------------------------------------------------------------------------------------


def inflate(data: bytes, limit: int = DEFAULT_MAX_UNCOMPRESSED) -> bytes:
    """Decompress gzip (all members) without ever holding more than `limit` bytes: bombs are refused."""
    return b"".join(list(inflate_chunks(data, limit)))  # one member, the usual case: its bytes, not a copy


def inflate_chunks(data: bytes, limit: int = DEFAULT_MAX_UNCOMPRESSED,
                   chunk_size: int | None = None) -> Iterator[bytes]:
    """The content of gzip data (all members), in pieces of at most `chunk_size` bytes (unbounded when None).

    BadInput as soon as more than `limit` bytes come out (a bomb), or when the data is corrupt or truncated.
    """
    size = 0
    remaining = data
    while remaining:
        inflater = isal_zlib.decompressobj(wbits=31)
        pending = remaining
        try:
            while True:
                chunk = inflater.decompress(pending, min(chunk_size or limit + 1, limit + 1 - size))
                size += len(chunk)
                if size > limit:
                    raise BadInput(f"decompresses to more than {limit:,} bytes (limit; possible gzip bomb)")
                yield chunk
                pending = inflater.unconsumed_tail
                if not pending and (inflater.eof or not chunk):
                    break
        except (isal_zlib.error, zlib.error) as exc:
            raise BadInput(f"corrupt gzip data: {exc}") from exc
        if not inflater.eof:
            raise BadInput("truncated gzip file: the compressed stream ends early")
        remaining = inflater.unused_data
        if remaining.strip(b"\0") == b"":
            break


def _describe_lookalike(doc: Any) -> str:
    if isinstance(doc, dict):
        if "logFiles" in doc and "digestStartTime" in doc:
            return "a CloudTrail digest file, not a log file"
        if doc.get("Type") == "Notification" or "TopicArn" in doc:
            return "an SNS notification envelope, not a CloudTrail log file"
        if "detail-type" in doc and "detail" in doc:
            return "an EventBridge event, not a CloudTrail log file"
        if "Messages" in doc or "ReceiptHandle" in doc or "receiptHandle" in doc:
            return "an SQS message envelope, not a CloudTrail log file"
        return f"a JSON object without a Records array (keys: {', '.join(sorted(map(str, doc))[:6])})"
    return f"JSON {type(doc).__name__}, not an object with a Records array"


_DIGIT_MASK = bytes(48 if 48 <= i <= 57 else 32 for i in range(256))
_LONG_DIGIT_RUN = b"0" * 19


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def load_json(text: bytes | str) -> Any:
    """Parse JSON fast with orjson, exactly with the standard library when orjson would not be exact.

    orjson turns integers beyond 64 bits into floats; such numbers need 19 or more digits, so text without a
    run of 19 digits is safe. The check costs about 1 ms per MB.
    """
    raw = text.encode() if isinstance(text, str) else text
    if raw.translate(_DIGIT_MASK).find(_LONG_DIGIT_RUN) < 0:
        return orjson.loads(raw)
    return json.loads(raw, parse_constant=_reject_constant)


# Python's parsers (json, msgspec) count a level of nesting as a level of recursion. CloudTrail has no limit of
# its own; a record nested a few thousand levels is still converted (kept as its text), deeper ones are refused.
DEEP_NESTING_LIMIT = 4000


@contextmanager
def deep_parsing() -> Iterator[None]:
    """Let Python's parsers nest up to DEEP_NESTING_LIMIT levels, for the few records that need it."""
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, DEEP_NESTING_LIMIT + 100))
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


def parse_json(text: bytes) -> Any:
    """Parsed JSON text; anything that is not valid JSON is BadInput with the parser's reason."""
    try:
        return load_json(text)
    except orjson.JSONDecodeError as orjson_error:
        try:
            with deep_parsing():
                return json.loads(text, parse_constant=_reject_constant)
        except RecursionError as exc:
            raise BadInput(f"invalid JSON: nested more than {DEEP_NESTING_LIMIT:,} levels deep") from exc
        except (ValueError, UnicodeDecodeError):
            raise BadInput(f"invalid JSON: {orjson_error}") from None
    except RecursionError as exc:
        raise BadInput(f"invalid JSON: nested more than {DEEP_NESTING_LIMIT:,} levels deep") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInput(f"invalid JSON: {exc}") from None


class _Inexact(Exception):
    """Python's value of some JSON text would not say exactly what the text says."""


def _distinct_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len({key for key, _ in pairs}) != len(pairs):
        raise _Inexact("a key appears twice in one object")
    return dict(pairs)


def _exact_float(text: str) -> float:
    value = float(text)
    if Decimal(repr(value)) != Decimal(text):
        raise _Inexact(f"{text} is not exactly a double")
    return value


def exact_value(text: bytes) -> Any:
    """The value of JSON text when Python's value says exactly what the text says, else the text itself.

    The text is kept, as an `orjson.Fragment` that orjson writes out verbatim, when its value is a number a double
    cannot hold (1e400, 1e-400, 1.00000000000000000000001), an integer beyond 64 bits, a string with a lone
    surrogate escape, an object with a key twice, or nesting deeper than orjson writes: so the event rebuilt is
    JSON-equal to the one delivered. Text that orjson writes back byte for byte is exact, the usual quick case.
    """
    try:
        value = orjson.loads(text)
        if orjson.dumps(value) == text:
            return value
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        pass
    try:
        with deep_parsing():
            value = json.loads(text, object_pairs_hook=_distinct_pairs, parse_float=_exact_float,
                               parse_constant=_reject_constant)
        orjson.dumps(value)  # nesting, integers and strings orjson cannot write
        return value
    except (_Inexact, RecursionError, orjson.JSONEncodeError):
        return orjson.Fragment(text)


_WHITESPACE = " \t\n\r"
_VALUE_DECODER = json.JSONDecoder(object_pairs_hook=lambda pairs: None, parse_float=lambda text: None)


def _skip_whitespace(text: str, at: int) -> int:
    while at < len(text) and text[at] in _WHITESPACE:
        at += 1
    return at


def top_level_fields(text: str) -> list[tuple[str, str]] | None:
    """Each (key, value's JSON text) of a JSON object's top level, in order, a repeated key as often as it
    appears; None when the text is not an object. ValueError when it is not valid JSON."""
    at = _skip_whitespace(text, 0)
    if text[at : at + 1] != "{":
        return None
    fields: list[tuple[str, str]] = []
    at = _skip_whitespace(text, at + 1)
    if text[at : at + 1] == "}":
        return fields
    while True:
        if text[at : at + 1] != '"':
            raise ValueError(f"expected a key at character {at}")
        key, at = scanstring(text, at + 1)
        at = _skip_whitespace(text, at)
        if text[at : at + 1] != ":":
            raise ValueError(f"expected ':' at character {at}")
        start = _skip_whitespace(text, at + 1)
        with deep_parsing():
            _, at = _VALUE_DECODER.raw_decode(text, start)
        fields.append((key, text[start:at]))
        at = _skip_whitespace(text, at)
        if text[at : at + 1] == ",":
            at = _skip_whitespace(text, at + 1)
        elif text[at : at + 1] == "}":
            return fields
        else:
            raise ValueError(f"expected ',' or '}}' at character {at}")


def exact_object(text: bytes) -> Any:
    """A JSON object whose top-level values are each `exact_value`: only the inexact fields stay text.

    BadInput when a key appears twice at the top level (which field is the event's would be a guess) or holds a
    lone surrogate (no column or patch can name it).
    """
    try:
        value = exact_value(text)
    except ValueError as exc:  # UnicodeDecodeError included
        raise BadInput(f"invalid JSON: {exc}") from None
    if not isinstance(value, orjson.Fragment):
        return value
    try:
        fields = top_level_fields(text.decode())
    except RecursionError as exc:
        raise BadInput(f"invalid JSON: nested more than {DEEP_NESTING_LIMIT:,} levels deep") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInput(f"invalid JSON: {exc}") from None
    if fields is None:
        return parse_json(text)
    keys = [key for key, _ in fields]
    for key in keys:
        if keys.count(key) > 1:
            raise BadInput(f"the field {key!r} appears {keys.count(key)} times in the event: which one is the "
                           f"event's cannot be told, so it is quarantined rather than one silently dropped")
        try:
            key.encode()
        except UnicodeEncodeError:
            raise BadInput(f"a field name holds a lone surrogate escape: {key.encode(errors='backslashreplace')!r}"
                           ) from None
    return {key: exact_value(item.encode()) for key, item in fields}


def parse_records(text: bytes) -> list[Any]:
    """The `Records` list of a log file; anything else is BadInput."""
    doc = parse_json(text)
    if not isinstance(doc, dict) or "Records" not in doc:
        raise BadInput(f"not a CloudTrail log file: {_describe_lookalike(doc)}")
    records = doc["Records"]
    if not isinstance(records, list):
        raise BadInput(f"Records is a JSON {type(records).__name__}, not an array")
    return records


def record_texts(text: bytes) -> list[bytes | msgspec.Raw]:
    """Each record's JSON text as delivered: the bytes its identity is computed from.

    What the fast splitter refuses is split again allowing deeper nesting and lone surrogate escapes; a document
    still refused is parsed in full, so that its error is reported precisely or, when it is valid after all, its
    records are re-serialized canonically.
    """
    try:
        records = split_records(text)
    except DECODE_ERRORS:
        pass
    else:
        if text.count(b'"Records"') > 1 and _gives_records_twice(text):
            raise BadInput('the file gives "Records" more than once: which list is the delivery cannot be told, '
                           "so the file is quarantined rather than one list silently dropped")
        return records
    try:
        with deep_parsing():
            return _split_keeping_surrogates(text)
    except DECODE_ERRORS:
        return [canonical_json(record) for record in parse_records(text)]


def _gives_records_twice(text: bytes) -> bool:
    """Whether the file's own object has the key "Records" twice (a decoder keeps the last list, silently)."""
    outermost: list[list[str]] = []

    def keys_of(pairs: list[tuple[str, Any]]) -> None:
        outermost[:] = [[key for key, _ in pairs]]

    try:
        json.loads(text, object_pairs_hook=keys_of)
    except (ValueError, RecursionError):
        return False
    return bool(outermost) and outermost[0].count("Records") > 1


# A \uD800-\uDFFF escape, which msgspec refuses unless it is half of a pair; replaced by an escape of the same
# length only to find where each record starts and ends.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _split_keeping_surrogates(text: bytes) -> list[bytes]:
    stand_in = _SURROGATE_ESCAPE.sub(rb"\\u0020", text)
    texts = []
    at = 0
    for raw in split_records(stand_in):
        piece = bytes(raw)
        at = stand_in.index(piece, at)
        texts.append(text[at : at + len(piece)])
        at += len(piece)
    return texts


def canonical_json(value: Any) -> bytes:
    """Key-sorted compact JSON; equal values give equal bytes."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def dump_json(value: Any) -> str:
    """JSON text for a free-form column."""
    try:
        return orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def record_identity(text: bytes | msgspec.Raw) -> int:
    """The de-duplication identity of a record: the xxh3 64-bit hash of its JSON text as delivered, unsigned.

    CloudTrail delivers a duplicate as the same bytes again, so equal text is the same event; two different
    events sharing an eventID differ in their bytes.
    """
    return xxhash.xxh3_64_intdigest(text)


def _content_object(pairs: list[tuple[str, Any]]) -> tuple[str, list[tuple[str, Any]]]:
    return ("object", sorted(pairs, key=repr))


def _content_number(text: str) -> tuple[str, Decimal]:
    value = Decimal(text)
    return ("number", value.normalize() if value else Decimal(0))


def content_identity(text: bytes) -> int:
    """A 128-bit hash equal for exactly the JSON-equal texts: key order, spacing and the spelling of a number
    (1e2, 100.0) do not count; a repeated key does. Slow: only for records whose eventID is seen twice."""
    with deep_parsing():
        value = json.loads(text, object_pairs_hook=_content_object, parse_float=_content_number,
                           parse_int=_content_number, parse_constant=_reject_constant)
        return xxhash.xxh3_128_intdigest(repr(value).encode(errors="surrogatepass"))


def signed_identity(identity: int) -> int:
    """The identity as the lake's signed 64-bit `eventhash`."""
    return identity - (1 << 64) if identity >= 1 << 63 else identity


# --- event time ------------------------------------------------------------------------------------------


def parse_event_time(value: Any) -> tuple[int, bool]:
    """(microseconds since epoch UTC, whether `value` is in CloudTrail's canonical form)."""
    if not isinstance(value, str):
        raise BadInput(f"eventTime is {type(value).__name__ if value is not None else 'missing or null'}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadInput(f"eventTime {value[:40]!r} is not an ISO-8601 time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    delta = parsed - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    canonical = len(value) == 20 and value[19] == "Z" and value[10] == "T"
    return micros, canonical


def format_event_time(moment: datetime | int) -> str:
    """CloudTrail's canonical form, `YYYY-MM-DDTHH:MM:SSZ`, of a time or of microseconds since the epoch."""
    if isinstance(moment, int):
        moment = _EPOCH + timedelta(microseconds=moment)
    m = moment.astimezone(UTC)
    return f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}Z"


# --- typed conversion ------------------------------------------------------------------------------------


Converter = Callable[[Any], tuple[Any, Any]]
_NO_PATCH = _MISSING


def _scalar_converter(kind: str) -> Converter:
    """Returns (column value, patch): patch is _NO_PATCH when the column holds the value exactly."""
    expected: type | tuple[type, ...]
    if kind == "string":
        expected = str
    elif kind == "boolean":
        expected = bool
    else:
        raise ValueError(kind)

    def convert(value: Any) -> tuple[Any, Any]:
        if type(value) is expected:
            return value, _NO_PATCH
        return None, value

    return convert


def _json_converter(value: Any) -> tuple[Any, Any]:
    if value is None:
        return None, None
    return dump_json(value), _NO_PATCH


def _map_converter(value: Any) -> tuple[Any, Any]:
    if isinstance(value, dict) and all(type(v) is str for v in value.values()):
        return list(value.items()), _NO_PATCH
    return None, value


def _struct_converter(fields: tuple[Field, ...]) -> Converter:
    plan = {f.source: (f.name, converter_for(f), f.type == "string") for f in fields}

    def convert(value: Any) -> tuple[Any, Any]:
        if type(value) is not dict:
            return None, value
        out: dict[str, Any] = {}
        patch: dict[str, Any] | None = None
        for key, item in value.items():
            spec = plan.get(key)
            if spec is None:
                if patch is None:
                    patch = {}
                patch[key] = item
                continue
            name, sub, is_string = spec
            if is_string and type(item) is str:
                out[name] = item
                continue
            column_value, item_patch = sub(item)
            out[name] = column_value
            if item_patch is not _NO_PATCH:
                if patch is None:
                    patch = {}
                patch[key] = item_patch
        return out, (_NO_PATCH if patch is None else patch)

    return convert


def _array_converter(items: Field) -> Converter:
    element = converter_for(items)

    def convert(value: Any) -> tuple[Any, Any]:
        if type(value) is not list:
            return None, value
        out = []
        exact = True
        for item in value:
            column_value, item_patch = element(item)
            out.append(column_value)
            exact = exact and item_patch is _NO_PATCH and column_value is not None
        return out, (_NO_PATCH if exact else value)

    return convert


def converter_for(f: Field) -> Converter:
    match f.type:
        case "string" | "boolean":
            return _scalar_converter(f.type)
        case "json":
            return _json_converter
        case "map":
            return _map_converter
        case "struct":
            return _struct_converter(f.fields)
        case "array":
            assert f.items is not None
            return _array_converter(f.items)
    raise ValueError(f"no converter for {f.type}")


# --- rebuilding ------------------------------------------------------------------------------------------


def _rebuild_value(f: Field, value: Any) -> Any:
    match f.type:
        case "json":
            return exact_value(value.encode())
        case "timestamp":
            return format_event_time(value)
        case "map":
            return dict(value)
        case "struct":
            return {c.source: _rebuild_value(c, value[c.name]) for c in f.fields if value[c.name] is not None}
        case "array":
            assert f.items is not None
            return [None if v is None else _rebuild_value(f.items, v) for v in value]
    return value


def _merge(target: dict, patch: dict, fields: dict[str, Field]) -> None:
    for key, value in patch.items():
        f = fields.get(key)
        if f is not None and f.type == "struct" and type(value) is dict and type(target.get(key)) is dict:
            _merge(target[key], value, {c.source: c for c in f.fields})
        else:
            target[key] = value


def rebuild_event(row: dict[str, Any], schema: TableSchema | None = None) -> dict[str, Any]:
    """The original CloudTrail event from a lake row (a dict keyed by column name)."""
    schema = schema or load_schema()
    event = {c.source: _rebuild_value(c, row[c.name]) for c in schema.columns if row.get(c.name) is not None}
    extra = row.get("extrafields")
    if extra:
        _merge(event, exact_object(extra.encode()), {c.source: c for c in schema.columns})
    return event


# --- files to rows ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuarantinedRecord:
    index: int
    reason: str
    record: Any


@dataclass
class ConvertedFile:
    """What converting one object gave: its records' fate, and its rows per partition when asked alone."""

    key: str
    records_read: int = 0
    quarantined: list[QuarantinedRecord] = field(default_factory=list)
    file_error: str | None = None
    compressed_bytes: int = 0
    uncompressed_bytes: int = 0
    tables: dict[Partition, pa.Table] = field(default_factory=dict)
    identities: list[int] = field(default_factory=list)
    """Each record's identity (`record_identity`), by index; only when converted on its own."""


def _partition_value(value: Any, fallback: str) -> str:
    if type(value) is str and 0 < len(value) <= 64 and SAFE_PARTITION_CHARS.issuperset(value) and value[0] != ".":
        return value
    if fallback and SAFE_PARTITION_CHARS.issuperset(fallback) and fallback[0] != ".":
        return fallback
    return UNKNOWN


def _lookalike_reason(record: dict) -> str | None:
    source = record.get("eventSource")
    if type(source) is str and source.startswith(NOTIFICATION_SOURCE_PREFIX):
        return f"not a CloudTrail event: an {source} event notification"
    return None


_MEMO_LIMIT = 1024
_MEMO_MAX_TEXT = 2048  # larger values are converted each time, so the memory kept stays a few MB per column


def _memoized(convert: Converter) -> Converter:
    """`convert` remembered by the value's exact JSON text: nested values (an identity, TLS details) repeat a lot.

    Equal JSON text means an equal value, key order included, so the remembered result is exactly what
    converting again would give. Results are only read afterwards (never mutated), so sharing them is safe.
    """
    memo: dict[bytes, tuple[Any, Any]] = {}
    dumps = orjson.dumps

    def convert_memoized(value: Any) -> tuple[Any, Any]:
        try:
            text = dumps(value)
        except (TypeError, orjson.JSONEncodeError):
            return convert(value)
        if len(text) > _MEMO_MAX_TEXT:
            return convert(value)
        found = memo.get(text)
        if found is None:
            if len(memo) >= _MEMO_LIMIT:
                memo.clear()
            found = memo[text] = convert(value)
        return found

    return convert_memoized


@cache
def _compiled_plan() -> tuple[pa.Schema, dict[str, tuple[int, Converter | None, str]]]:
    """The Arrow schema and, per CloudTrail field, (column index, converter, type): built once per process."""
    schema = load_schema()
    plan = {
        c.source: (index, _plan_converter(c), c.type)
        for index, c in enumerate(schema.columns)
    }
    return converted_schema(schema), plan


def _plan_converter(c: Field) -> Converter | None:
    if c.type == "timestamp":
        return None
    convert = converter_for(c)
    return _memoized(convert) if c.type in ("struct", "array") else convert


class RowBuilder:
    """Accumulates converted events, one list per row, grouped by partition, for one table."""

    def __init__(self, table_name: str) -> None:
        self.table_name = table_name
        self.arrow, self.plan = _compiled_plan()
        self.string_columns = {key: index for key, (index, _, kind) in self.plan.items() if kind == "string"}
        self.width = len(self.arrow)
        self.lineage_at = self.width - 3
        self.groups: dict[Place, list[list[Any]]] = {}
        # (day number, recipientAccountId, awsRegion, key's account, key's region) -> its place's rows; saves
        # working out the same place for every event.
        self.by_place: dict[tuple[Any, ...], list[list[Any]]] = {}

    def add(self, event: dict, micros: int, time_canonical: bool, source_key: str, account: str,
            region: str, identity: int) -> None:
        """Convert one event; nothing is kept unless the whole row converts."""
        patch: dict[str, Any] | None = None
        row: list[Any] = [None] * self.width
        plan = self.plan
        strings = self.string_columns
        for key, value in event.items():
            if type(value) is str:
                # The common case first: a string for a string column goes in as it is.
                string_at = strings.get(key)
                if string_at is not None:
                    row[string_at] = value
                    continue
            spec = plan.get(key)
            if spec is None:
                patch = patch or {}
                patch[key] = value
                continue
            index, convert, kind = spec
            if kind == "string" and type(value) is str:
                row[index] = value
            elif convert is None:
                row[index] = micros
                if not time_canonical:
                    patch = patch or {}
                    patch[key] = value
            else:
                column_value, item_patch = convert(value)
                row[index] = column_value
                if item_patch is not _NO_PATCH:
                    patch = patch or {}
                    patch[key] = item_patch
        at = self.lineage_at
        row[at] = None if patch is None else dump_json(patch)
        row[at + 1] = source_key
        row[at + 2] = signed_identity(identity)
        recipient, aws_region = event.get("recipientAccountId"), event.get("awsRegion")
        place = (micros // _MICROS_PER_DAY, recipient if type(recipient) is str else None,
                 aws_region if type(aws_region) is str else None, account, region)
        group = self.by_place.get(place)
        if group is None:
            row_place = (
                self.table_name,
                (_EPOCH + timedelta(microseconds=micros)).date(),
                _partition_value(place[1], account),
                _partition_value(place[2], region),
            )
            group = self.by_place[place] = self.groups.setdefault(row_place, [])
        group.append(row)

    def tables(self) -> dict[Place, pa.Table]:
        """Rows so far as one Arrow table per place (its values are not columns yet)."""
        types = self.arrow.types
        return {
            place: pa.Table.from_arrays(
                [pa.array(values, type=t) for values, t in zip(zip(*rows, strict=True), types, strict=True)],
                schema=self.arrow,
            )
            for place, rows in self.groups.items()
        }


def _record_reason(record: Any) -> str | None:
    if type(record) is not dict:
        return f"record is a JSON {type(record).__name__ if record is not None else 'null'}, not an object"
    return _lookalike_reason(record)


@cache
def _nested_converters() -> dict[str, Converter]:
    return {c.source: converter_for(c) for c in load_schema().columns if c.type in ("struct", "array", "map")}


def exact_nested_value(source: str, text: bytes) -> tuple[Any, Any]:
    """The exact conversion of one nested field's JSON text, for the typed path (see `TypedBatch`)."""
    column_value, patch = _nested_converters()[source](exact_value(text))
    return column_value, NO_PATCH if patch is _NO_PATCH else patch


class BatchConverter:
    """Converts several objects into shared row builders, so that small files cost little each.

    Records that fit the schema's types go through the typed, column-at-a-time path; the others through the
    exact row-by-row path. A file's result (its quarantined records) is final once `tables()` has run.
    """

    def __init__(self, max_uncompressed: int = DEFAULT_MAX_UNCOMPRESSED, keep_identities: bool = False) -> None:
        self.max_uncompressed = max_uncompressed
        self.keep_identities = keep_identities
        self.builders = {name: RowBuilder(name) for name in (CLOUDTRAIL_TABLE, INSIGHTS_TABLE)}
        self.typed = TypedBatch(exact_nested_value)

    def add(self, key: str, data: bytes, account: str, region: str) -> ConvertedFile:
        """Convert one log object's bytes. Never raises for bad input: it is reported in the result."""
        result = ConvertedFile(key, compressed_bytes=len(data))
        try:
            text = inflate(data, self.max_uncompressed) if data[:2] == b"\x1f\x8b" else _plain_json(key, data)
            result.uncompressed_bytes = len(text)
            records = record_texts(text)
        except BadInput as exc:
            result.file_error = str(exc)
            return result
        result.records_read = len(records)
        source = self.typed.add_source(Source(result, key, account, region))
        identities = [record_identity(raw) for raw in records]
        if self.keep_identities:
            result.identities = identities
        typed_keys = key_ends(text) - 1  # less the "Records" key; any other key only makes each record be checked
        for index, raw in enumerate(records):
            origin = (source, index, raw, identities[index])
            if not self.typed.add(origin):
                self._convert_exactly(origin)
                typed_keys -= bytes(raw).count(KEY_END)
        self.typed.count_keys(source, typed_keys if typed_keys >= 0 else -1)
        return result

    def _convert_exactly(self, origin: Origin) -> None:
        number, index, raw, identity = origin
        source = self.typed.sources[number]
        record: Any = None
        try:
            record = exact_object(bytes(raw))
            reason = _record_reason(record)
            if reason:
                raise BadInput(reason)
            micros, canonical = parse_event_time(record.get("eventTime"))
            table = INSIGHTS_TABLE if record.get("eventType") == INSIGHT_EVENT_TYPE else CLOUDTRAIL_TABLE
            self.builders[table].add(record, micros, canonical, source.key, source.account, source.region, identity)
        except BadInput as exc:
            source.result.quarantined.append(QuarantinedRecord(index, str(exc), _quarantined_value(record, raw)))
        except (OverflowError, ValueError) as exc:
            source.result.quarantined.append(QuarantinedRecord(index, f"unconvertible record: {exc}", record))

    def tables(self) -> dict[Partition, pa.Table]:
        typed, days, sources, handed_back = self.typed.build()
        for origin in handed_back:
            self._convert_exactly(origin)
        for number in {origin[0] for origin in handed_back}:
            self.typed.sources[number].result.quarantined.sort(key=lambda q: q.index)
        places = [*self._typed_places(typed, days, sources).items()]
        for builder in self.builders.values():
            places += builder.tables().items()
        return by_partition(places)

    def _typed_places(self, rows: pa.Table, days: np.ndarray, sources: np.ndarray) -> dict[Place, pa.Table]:
        """The typed rows split by place: slices when each place's rows are together, else one reordering."""
        if not rows.num_rows:
            return {}
        accounts = rows.column("recipientaccountid").combine_chunks().dictionary_encode()
        regions = rows.column("awsregion").combine_chunks().dictionary_encode()
        places = np.stack([days, _codes(accounts), _codes(regions), sources], axis=1)
        distinct, first_row, place_of_row = np.unique(places, axis=0, return_index=True, return_inverse=True)
        account_names = accounts.dictionary.to_pylist()
        region_names = regions.dictionary.to_pylist()
        place_ids: dict[Place, int] = {}
        place_number = np.empty(len(distinct), dtype=np.int64)
        for at in np.argsort(first_row):  # numbered in order of first appearance
            day, account_code, region_code, number = distinct[at].tolist()
            source = self.typed.sources[number]
            place = (
                CLOUDTRAIL_TABLE,
                (_EPOCH + timedelta(days=day)).date(),
                _partition_value(account_names[account_code] if account_code >= 0 else None, source.account),
                _partition_value(region_names[region_code] if region_code >= 0 else None, source.region),
            )
            place_number[at] = place_ids.setdefault(place, len(place_ids))
        place_id_of_row = place_number[place_of_row.ravel()]
        if np.all(place_id_of_row[1:] >= place_id_of_row[:-1]):
            ordered = rows
        else:
            order = np.argsort(place_id_of_row, kind="stable")
            ordered = rows.take(pa.array(order))
            place_id_of_row = place_id_of_row[order]
        bounds = np.searchsorted(place_id_of_row, np.arange(len(place_ids) + 1))
        return {place: ordered.slice(bounds[i], bounds[i + 1] - bounds[i]) for place, i in place_ids.items()}


def with_region(rows: pa.Table, region: str) -> pa.Table:
    """Rows of one region with that region as their clustering column, as the lake's files hold them."""
    return rows.append_column(REGION, pa.repeat(pa.scalar(region, pa.string()), rows.num_rows))


def by_partition(places: list[tuple[Place, pa.Table]]) -> dict[Partition, pa.Table]:
    """Rows by partition, each with its place's region as a column, in region order (the files' clustering)."""
    grouped: dict[Partition, list[pa.Table]] = {}
    for (table, day, account, region), rows in sorted(places, key=lambda item: item[0][3]):
        grouped.setdefault((table, day, account), []).append(with_region(rows, region))
    return {partition: pieces[0] if len(pieces) == 1 else pa.concat_tables(pieces)
            for partition, pieces in grouped.items()}


def _codes(encoded: pa.DictionaryArray) -> np.ndarray:
    return encoded.indices.fill_null(-1).to_numpy().astype(np.int64)


def _quarantined_value(record: Any, raw: bytes | msgspec.Raw) -> Any:
    """The record as quarantine keeps it: parsed when it parsed, else its text."""
    text = bytes(raw)
    if record is not None or text == b"null":
        return record
    return text.decode(errors="replace")


def convert_object(key: str, data: bytes, account: str, region: str,
                   max_uncompressed: int = DEFAULT_MAX_UNCOMPRESSED) -> ConvertedFile:
    """Convert one object on its own, with its rows."""
    batch = BatchConverter(max_uncompressed, keep_identities=True)
    result = batch.add(key, data, account, region)
    result.tables = batch.tables()
    return result


def _plain_json(key: str, data: bytes) -> bytes:
    if key.endswith(".gz"):
        raise BadInput("not a gzip file (no gzip header)")
    return data
