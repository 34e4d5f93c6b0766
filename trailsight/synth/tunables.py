"""The numbers that shape the archive (delivery lag, stragglers, duplicates, error scale), kept together."""

from __future__ import annotations

GZIP_LEVEL = 1  # isal level 1: ~20x smaller at several GB/s; the level only changes file sizes.
DELIVERY_WINDOW_S = 300  # CloudTrail delivers about every 5 minutes per account and region.
DELIVERY_LAG_S = (120, 600)  # extra lag after the window closes: events are ~2-15 minutes old on delivery.
STRAGGLER_SHARE = 0.01  # events that miss their window and ride in the next file.
DUPLICATE_SHARE = 0.003  # events delivered a second time, byte-identical, in another file.
REDELIVERY_LAG_S = (900, 7200)  # duplicates re-sent after midnight land 15 min - 2 h into the next day.
ERROR_SCALE = 2.0  # multiplies every API's error rate; 2.0 gives ~3% failed calls overall
SIGNATURE_ALGORITHM = "SHA256withRSA"
UNSIGNED_SIGNATURE = ""  # digests are not signed yet; see _DigestSigner.
