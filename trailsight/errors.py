"""Domain errors: the CLI turns each into one `Error: ...` line and exit code 1."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (or its type): for one-line errors from verbose libraries."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class TrailsightError(Exception):
    """Root of every error trailsight reports to a user."""


class UsageError(TrailsightError):
    """Arguments that cannot work together or a value in the wrong form."""


class StorageError(TrailsightError):
    """A location cannot be read or written."""


class TransientError(StorageError):
    """A storage failure worth retrying: throttling, a timeout, a reset connection, a 5xx."""


class LakeLockedError(TrailsightError):
    """Another run holds the lake's lock."""


class SchemaError(TrailsightError):
    """The schema file is missing or malformed."""


class QueryError(TrailsightError):
    """A SQL query failed."""


class PolicyError(TrailsightError):
    """The retention policy or the price table is missing or invalid."""


class ArchiveError(TrailsightError):
    """A day cannot be archived or restored as asked."""


class LifecycleError(TrailsightError):
    """A bucket's lifecycle configuration cannot be read, planned or written."""


class NoDataError(TrailsightError):
    """A day asked about holds no events: a report of it must not read as an all-clear."""


class AlertError(TrailsightError):
    """An alert could not be delivered."""


class ArchivedObjectError(StorageError):
    """An object in an archive storage class was read before a restore made it readable."""


class BadInput(Exception):
    """An object or record that cannot be converted; its message is the quarantine reason."""
