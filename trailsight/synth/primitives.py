"""Seeded ids, timestamps and weight helpers shared by the generator, and the reader of its data files."""

from __future__ import annotations

import base64
import hashlib
import random
import string
from collections.abc import Sequence
from datetime import UTC, date, datetime
from functools import cache, lru_cache
from typing import Any

import yaml

from trailsight.resources import package_folder

_MINUTES_PER_DAY = 1440
_SECONDS_PER_DAY = 86400
_ALNUM = string.ascii_letters + string.digits
_LOWER_ALNUM = string.ascii_lowercase + string.digits
_HEX = "0123456789abcdef"
_B32_TABLE = bytes((string.ascii_uppercase + "234567").encode()[i % 32] for i in range(256))  # byte -> A-Z2-7
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in _HEX}
_HMS = tuple(f"T{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}Z" for s in range(_SECONDS_PER_DAY))
_MINUTES = tuple(range(_MINUTES_PER_DAY))


@cache
def _read_data(name: str) -> Any:
    """One of the generator's tables (world.yaml, apis.yaml, incidents.yaml), shipped in this package.

    Parsed once per process and shared: callers copy what they keep and never change it.
    """
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: several times faster
    return yaml.load((package_folder("trailsight.synth") / name).read_text(), Loader=loader)


def _derive_seed(*parts: object) -> int:
    """Stable 64-bit seed from parts; sha256 so it does not depend on PYTHONHASHSEED or the process."""
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "big")


def _rand_str(rng: random.Random, alphabet: str, k: int) -> str:
    return "".join(rng.choices(alphabet, k=k))


def _key_id(rng: random.Random, prefix: str, k: int = 16) -> str:
    """AWS-style key or unique id (AKIA..., ASIA..., AROA...): base32 characters, as AWS uses."""
    return prefix + rng.randbytes(k).translate(_B32_TABLE).decode()


def _uuid4(rng: random.Random) -> str:
    """uuid4-shaped id from the seeded RNG (uuid.uuid4 would read os.urandom and break determinism)."""
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


def _uuid4_pair(rng: random.Random) -> tuple[str, str]:
    """Two uuid4-shaped ids from one draw (requestID and eventID of an event): the hot path needs both."""
    h = f"{rng.getrandbits(256):064x}"
    return (
        f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}",
        f"{h[32:40]}-{h[40:44]}-4{h[45:48]}-{_VARIANT[h[48]]}{h[49:52]}-{h[52:]}",
    )


def _hex(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}"


def _b64(rng: random.Random, nbytes: int) -> str:
    return base64.b64encode(rng.randbytes(nbytes)).decode()


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _java_date(epoch: int) -> str:
    """The 'May 9, 2024, 1:07:12 AM' style several services use inside responseElements."""
    minute, second = divmod(epoch, 60)
    return f"{_java_minute(minute)}:{second:02d} {'AM' if epoch % 86400 < 43200 else 'PM'}"


@lru_cache(maxsize=4096)
def _java_minute(minute: int) -> str:
    t = datetime.fromtimestamp(minute * 60, UTC)
    return f"{t:%b} {t.day}, {t.year}, {t.hour % 12 or 12}:{t:%M}"


def _day_epoch(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())


def _cum(weights: Sequence[float]) -> list[float]:
    out, acc = [], 0.0
    for w in weights:
        acc += w
        out.append(acc)
    return out


def _largest_remainder(total: int, shares: Sequence[float]) -> list[int]:
    """Split an integer total by shares so the parts add up exactly (summary counts stay predictable)."""
    s = sum(shares)
    raw = [total * x / s for x in shares]
    base = [int(x) for x in raw]
    rest = total - sum(base)
    for i in sorted(range(len(raw)), key=lambda i: (base[i] - raw[i], i))[:rest]:
        base[i] += 1
    return base
