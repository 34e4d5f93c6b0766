"""Stage 2, conversion, fast path: well-formed events decoded straight into Arrow columns.

Nearly every CloudTrail event holds only fields the schema knows, with the types it expects. For those,
msgspec decodes the record into a struct generated from the schema (free-form objects stay as their raw JSON
text, never parsed), and a batch's rows become Arrow arrays a column at a time instead of a value at a time.
Whatever does not fit (unknown fields, explicit nulls outside free-form objects, values of an unexpected type,
non-canonical or impossible times, Insights records, look-alike notifications, bytes that are not UTF-8) is
handed back to the exact row-by-row conversion in `conversion`, so both paths keep every event losslessly.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import msgspec
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from trailsight.schema import Field, arrow_type, converted_schema, load_schema

# Nested values that repeat from event to event (one caller's identity, the TLS details): each distinct text is
# decoded and converted once per batch, and the column is built by index.
MEMOIZED = frozenset({"userIdentity", "tlsDetails", "resources"})
JSON_NULL = b"null"
INSIGHT_EVENT_TYPE = "AwsCloudTrailInsight"
NOTIFICATION_SOURCE_PREFIX = "aws:"  # an S3, DynamoDB or Kinesis event notification: "aws:s3", ...
_MICROS_PER_DAY = 86_400_000_000
_CANONICAL_TIME = "%Y-%m-%dT%H:%M:%SZ"
_FIRST_MICROS = -62_135_596_800_000_000  # 0001-01-01T00:00:00Z: Python has no year 0
DECODE_ERRORS = (msgspec.ValidationError, msgspec.DecodeError, RecursionError)


def _msgspec_type(f: Field, name: str) -> Any:
    match f.type:
        case "string" | "timestamp":
            return str
        case "boolean":
            return bool
        case "json":
            return msgspec.Raw
        case "map":
            return dict[str, str]
        case "struct":
            return _struct_type(f.fields, name)
        case "array":
            assert f.items is not None
            return list[_msgspec_type(f.items, f"{name}_item")]
    raise ValueError(f"no typed decoding for {f.type}")


def _struct_type(fields: tuple[Field, ...], name: str, raw: frozenset[str] = frozenset()) -> type[msgspec.Struct]:
    """A struct whose fields default to None: a missing field is None, an explicit null fails to decode."""
    return msgspec.defstruct(
        name,
        [(c.source, msgspec.Raw if c.source in raw else _msgspec_type(c, f"{name}_{c.name}"), None) for c in fields],
        forbid_unknown_fields=True,
    )


@dataclass(frozen=True)
class _Decoders:
    records: msgspec.json.Decoder
    event: msgspec.json.Decoder
    memoized: dict[str, msgspec.json.Decoder]
    columns: tuple[Field, ...]
    schema: pa.Schema


@cache
def _decoders() -> _Decoders:
    schema = load_schema()
    log_file = msgspec.defstruct("LogFile", [("Records", list[msgspec.Raw])])
    event = _struct_type(schema.columns, "Event", MEMOIZED)
    memoized = {c.source: msgspec.json.Decoder(_msgspec_type(c, c.name)) for c in schema.columns
                if c.source in MEMOIZED}
    return _Decoders(msgspec.json.Decoder(log_file), msgspec.json.Decoder(event), memoized, schema.columns,
                     converted_schema(schema))


def split_records(text: bytes) -> list[msgspec.Raw]:
    """Each record's JSON text, exactly as delivered, without parsing the records.

    Raises one of DECODE_ERRORS when the text is not a `{"Records": [...]}` document.
    """
    return _decoders().records.decode(text).Records


Origin = tuple[int, int, msgspec.Raw, int]
"""Where a record came from, to convert it again or to place it: (source number, index in its file, its JSON
text, its identity). A plain tuple: one is made per event."""

KEY_END = b'":'
"""How every key ends in JSON without whitespace before its colons; a string's content can only hold it as
`\\":`, which makes a count too high (the record then takes the exact conversion), never too low."""
_LINE_SPACE = (b"\t", b"\n", b"\r")
"""Text holding one of these, or a quote followed by a space, may have whitespace between a key and its colon:
its keys are not counted."""
_QUOTE, _COLON, _SPACE = ord('"'), ord(":"), ord(" ")


def key_ends(text: bytes) -> int:
    """How many keys a text gives, at every level, or -1 when its spacing does not let them be counted.

    A struct decodes a key given twice as its last value, silently; comparing this with the keys the decoded
    records hold finds every repeat without parsing the text again. The bytes after each quote are looked at
    once, in numpy: a third of the time of searching the text for each two-byte pattern.
    """
    if any(mark in text for mark in _LINE_SPACE):
        return -1
    data = np.frombuffer(text, np.uint8)
    after_quotes = data[np.flatnonzero(data[:-1] == _QUOTE) + 1]
    if (after_quotes == _SPACE).any():
        return -1
    return int(np.count_nonzero(after_quotes == _COLON))


@dataclass(frozen=True)
class Source:
    """One log object of the batch: its conversion result and what its key says."""

    result: Any
    key: str
    account: str
    region: str


ExactConverter = Callable[[str, bytes], tuple[Any, Any]]
"""The exact conversion of one nested value, given its field and JSON text: (the column's value in Arrow's Python
form, the merge patch of what the column cannot hold, or NO_PATCH). It raises ValueError when it cannot."""
NO_PATCH: Any = object()


class TypedBatch:
    """Typed rows of many files, turned into one Arrow table when the batch is done.

    A nested value the structs refuse (an unknown field in an identity: common in real logs) is converted by
    `exact` once per distinct text, its row staying on the fast path with the rest in `extrafields`.
    """

    def __init__(self, exact: ExactConverter) -> None:
        self.exact = exact
        self.decoders = _decoders()
        self.events: list[msgspec.Struct] = []
        self.origins: list[Origin] = []
        self.sources: list[Source] = []
        self.key_ends: list[int] = []
        """Per source, the `key_ends` of its typed records together: see `count_keys`."""

    def add_source(self, source: Source) -> int:
        self.sources.append(source)
        self.key_ends.append(-1)
        return len(self.sources) - 1

    def count_keys(self, number: int, key_ends: int) -> None:
        """How many keys the typed records of a source give in its text (-1: unknown). `build` compares it with
        the keys they decoded into, and checks each record of a source whose counts differ."""
        self.key_ends[number] = key_ends

    def add(self, origin: Origin) -> bool:
        """Take the record when it fits the typed structs; False leaves it to the exact conversion."""
        try:
            event = self.decoders.event.decode(origin[2])
        except DECODE_ERRORS:
            return False
        time, source = event.eventTime, event.eventSource
        if time is None or len(time) != 20 or time[10] != "T" or time[19] != "Z":
            return False
        if event.eventType == INSIGHT_EVENT_TYPE or (source or "").startswith(NOTIFICATION_SOURCE_PREFIX):
            return False
        self.events.append(event)
        self.origins.append(origin)
        return True

    def build(self) -> tuple[pa.Table, np.ndarray, np.ndarray, list[Origin]]:
        """(the rows that converted, their day numbers, their source numbers, the records handed back)."""
        rows = len(self.events)
        if not rows:
            return self.decoders.schema.empty_table(), np.zeros(0, np.int64), np.zeros(0, np.int64), []
        refused = np.zeros(rows, dtype=bool)
        null_json: dict[str, np.ndarray] = {}
        patches: dict[str, tuple[np.ndarray, list[Any]]] = {}
        arrays = []
        micros = np.zeros(0, dtype=np.int64)
        keys = np.zeros(rows, dtype=np.int64)
        astuple = msgspec.structs.astuple
        columns = zip(*[astuple(event) for event in self.events], strict=True)
        for c, values in zip(self.decoders.columns, columns, strict=True):
            if c.source in MEMOIZED:
                array, row_keys, patches[c.source] = self._memoized_column(c, values, refused)
                arrays.append(array)
            elif c.type == "json":
                array, null_json[c.source] = _json_column(values, refused)
                arrays.append(array)
                row_keys = (null_json[c.source] + _present(array)
                            + pc.count_substring(array, KEY_END.decode()).fill_null(0).to_numpy())
            elif c.type == "timestamp":
                texts = pa.array(values, pa.string())
                times = pc.strptime(texts, format=_CANONICAL_TIME, unit="us", error_is_null=True)
                micros = times.cast(pa.int64()).fill_null(0).to_numpy()
                refused |= ~_names_its_moment(texts, times) | (micros < _FIRST_MICROS)
                arrays.append(times.cast(arrow_type(c)))
                row_keys = _present(texts)
            else:
                arrays.append(_column(c, values))
                row_keys = _present(arrays[-1]) + _keys_below(arrays[-1])
            keys += row_keys
        source_numbers, _, _, identities = zip(*self.origins, strict=True)
        sources = np.array(source_numbers, dtype=np.int64)
        refused |= self._repeated_keys(keys, sources)
        arrays.append(_extrafields(null_json, patches))
        arrays.append(pa.DictionaryArray.from_arrays(
            pa.array(sources, pa.int32()), pa.array([s.key for s in self.sources], pa.string())).cast(pa.string()))
        arrays.append(pa.array(np.array(identities, dtype=np.uint64).view(np.int64)))
        table = pa.Table.from_arrays(arrays, schema=self.decoders.schema)
        handed_back = [self.origins[i] for i in np.flatnonzero(refused)]
        if handed_back:
            kept = ~refused
            table = table.filter(pa.array(kept))
            micros, sources = micros[kept], sources[kept]
        return table, micros // _MICROS_PER_DAY, sources, handed_back

    def _repeated_keys(self, keys: np.ndarray, sources: np.ndarray) -> np.ndarray:
        """Which rows' texts give more keys than the rows hold: a key given twice, or text too odd to count."""
        decoded = np.bincount(sources, weights=keys, minlength=len(self.sources)).astype(np.int64)
        differing = np.flatnonzero(decoded != np.array(self.key_ends, dtype=np.int64))
        repeated = np.zeros(len(keys), dtype=bool)
        for row in np.flatnonzero(np.isin(sources, differing)).tolist():
            repeated[row] = key_ends(bytes(self.origins[row][2])) != keys[row]
        return repeated

    def _memoized_column(self, c: Field, values: tuple[Any, ...], refused: np.ndarray
                         ) -> tuple[pa.Array, np.ndarray, tuple[np.ndarray, list[Any]]]:
        """Each distinct text decoded and converted once; rows take their value by position. Also how many keys
        each row gives (its own and those in its text), for the check on repeated keys (`key_ends`), and each
        row's merge patch for this field, as (positions, the patch of each distinct text or NO_PATCH).

        Texts are told apart by their 128-bit xxh3 hash, so no copy of the text is made.
        """
        fingerprint = xxhash.xxh3_128_intdigest
        numbers: dict[int, int] = {}
        positions = np.array([-1 if value is None else numbers.setdefault(fingerprint(value), len(numbers))
                              for value in values], dtype=np.int32)
        distinct, first_rows = np.unique(positions, return_index=True)
        decoder = self.decoders.memoized[c.source]
        decoded: list[Any] = []
        exact: list[Any] = []
        patches: list[Any] = []
        failed: list[int] = []
        exact_keys: dict[int, int] = {}
        for number, row in zip(distinct.tolist(), first_rows.tolist(), strict=True):
            if number < 0:
                continue
            text = bytes(values[row])
            value = None
            with contextlib.suppress(DECODE_ERRORS):
                value = decoder.decode(text)
            if value is not None:
                decoded.append(value)
                exact.append(None)
                patches.append(NO_PATCH)
                continue
            decoded.append(None)
            exact_keys[number] = text.count(KEY_END)
            try:
                column_value, patch = self.exact(c.source, text)
            except ValueError:
                column_value, patch = None, NO_PATCH
                failed.append(number)
            exact.append(column_value)
            patches.append(patch)
        if failed:
            refused |= np.isin(positions, failed)
        typed = _column(c, decoded)
        # The keys each distinct value holds: as decoded (a key given twice is then missing from the count, and
        # the record's check catches it), or, for a value converted exactly, as its text gives them.
        inner_keys = np.append(_keys_below(typed), 0)  # the last one stands for "absent"
        for number, keys in exact_keys.items():
            inner_keys[number] = keys
        row_keys = inner_keys[positions] + (positions >= 0)
        mask = positions < 0
        if all(value is None for value in exact):
            return typed.take(pa.array(positions, mask=mask)), row_keys, (positions, patches)
        # Values converted exactly follow the typed ones: a row's index moves past them when its text was one.
        both = pa.concat_arrays([typed, pa.array(exact, arrow_type(c))])
        moved = np.array([value is not None for value in exact] + [False], dtype=bool)
        indices = positions + np.where(moved[positions], len(exact), 0)
        return both.take(pa.array(indices, mask=mask)), row_keys, (positions, patches)


def _present(array: pa.Array) -> np.ndarray:
    return array.is_valid().to_numpy(zero_copy_only=False).astype(np.int64)


def _keys_below(array: pa.Array) -> np.ndarray:
    """How many keys each row's value holds below its own: the fields present in a struct, at every depth."""
    keys = np.zeros(len(array), dtype=np.int64)
    if pa.types.is_struct(array.type):
        for child in (array.field(i) for i in range(array.type.num_fields)):
            keys += _present(child) + _keys_below(child)
    elif pa.types.is_map(array.type):  # string to string: each entry is a key
        offsets = array.offsets.to_numpy()
        keys += np.where(_present(array) > 0, np.diff(offsets), 0)
    elif pa.types.is_list(array.type):
        lengths = pc.list_value_length(array).fill_null(0).to_numpy(zero_copy_only=False)
        parents = np.repeat(np.arange(len(array)), lengths)
        keys += np.bincount(parents, weights=_keys_below(array.flatten()), minlength=len(array)).astype(np.int64)
    return keys


def _names_its_moment(texts: pa.Array, times: pa.Array) -> np.ndarray:
    """Whether each canonically shaped time is the moment it was parsed as.

    Arrow's parser rolls impossible times over (February 30th becomes March 1st, second 60 the next minute) where
    the exact conversion refuses them; writing the moment back out and comparing finds those.
    """
    written = pc.binary_join_element_wise(times.cast(pa.timestamp("s")).cast(pa.string()), "Z", "")
    same = pc.equal(written, pc.replace_substring(texts, "T", " "))
    return same.fill_null(False).to_numpy(zero_copy_only=False)


def _column(f: Field, values: Sequence[Any]) -> pa.Array:
    """One column from decoded values (strings, booleans, structs, lists, dicts; None where absent)."""
    match f.type:
        case "struct":
            children = [_column(c, [None if v is None else getattr(v, c.source) for v in values]) for c in f.fields]
            mask = pa.array([v is None for v in values], pa.bool_())
            return pa.StructArray.from_arrays(children, fields=list(arrow_type(f)), mask=mask)
        case "array":
            assert f.items is not None
            offsets = [0]
            items: list[Any] = []
            for v in values:
                if v is not None:
                    items.extend(v)
                offsets.append(len(items))
            mask = pa.array([v is None for v in values], pa.bool_())
            return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), _column(f.items, items),
                                            type=arrow_type(f), mask=mask)
        case "map":
            return pa.array([None if v is None else list(v.items()) for v in values], arrow_type(f))
    return pa.array(values, arrow_type(f))


def _json_column(values: tuple[Any, ...], refused: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """Free-form objects as their delivered JSON text, and which rows held an explicit null (for `extrafields`)."""
    if values.count(None) == len(values):
        return pa.nulls(len(values), pa.string()), np.zeros(len(values), dtype=bool)
    binary = pa.array([None if v is None else bytes(v) for v in values], pa.binary())
    null = pc.equal(binary, pa.scalar(JSON_NULL, pa.binary())).fill_null(False)
    binary = pc.if_else(null, pa.scalar(None, pa.binary()), binary)
    try:
        return binary.cast(pa.string()), null.to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        texts = binary.to_pylist()
        for row, text in enumerate(texts):
            if text is not None and not _is_utf8(text):
                refused[row] = True
                texts[row] = None
        return pa.array(texts, pa.binary()).cast(pa.string()), null.to_numpy(zero_copy_only=False)


def _is_utf8(text: bytes) -> bool:
    try:
        text.decode()
    except UnicodeDecodeError:
        return False
    return True


def _extrafields(null_json: dict[str, np.ndarray], patches: dict[str, tuple[np.ndarray, list[Any]]]) -> pa.Array:
    """The merge patch of typed rows, in schema order: the free-form fields that were an explicit null, and what
    the exact conversion of a nested value could not hold.

    Rows share a handful of combinations, so each combination's text is made once.
    """
    sources = list(null_json)
    combination = np.zeros(len(next(iter(null_json.values()))), dtype=np.int64)
    for bit, source in enumerate(sources):
        combination |= null_json[source].astype(np.int64) << bit
    patched = [(source, positions, texts) for source, (positions, texts) in patches.items()
               if any(patch is not NO_PATCH for patch in texts)]
    for source, positions, _ in patched:
        # Each distinct value of the field is a number; rows without the field, or with no patch, count as 0.
        combination = combination * (len(patches[source][1]) + 1) + np.where(positions < 0, 0, positions + 1)
    _, first_rows, indices = np.unique(combination, return_index=True, return_inverse=True)
    texts = []
    for row in first_rows.tolist():
        patch = {source: None for source in sources if null_json[source][row]}
        for source, positions, field_patches in patched:
            if positions[row] >= 0 and field_patches[positions[row]] is not NO_PATCH:
                patch[source] = field_patches[positions[row]]
        texts.append(_patch_text(patch, [c.source for c in _decoders().columns]) if patch else None)
    return pa.DictionaryArray.from_arrays(indices.astype(np.int32), pa.array(texts, pa.string())).cast(pa.string())


def _patch_text(patch: dict[str, Any], order: list[str]) -> str:
    ordered = {source: patch[source] for source in order if source in patch}
    try:
        return orjson.dumps(ordered).decode()
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(ordered, separators=(",", ":"), ensure_ascii=False)
