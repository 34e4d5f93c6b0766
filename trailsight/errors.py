"""Domain errors: the CLI turns each into one `Error: ...` line and exit code 1."""


class TrailsightError(Exception):
    """Root of every error trailsight reports to a user."""


class UsageError(TrailsightError):
    """Arguments that cannot work together or a value in the wrong form."""


class StorageError(TrailsightError):
    """A location cannot be read or written."""


class LakeLockedError(TrailsightError):
    """Another run holds the lake's lock."""


class SchemaError(TrailsightError):
    """The schema file is missing or malformed."""


class QueryError(TrailsightError):
    """A SQL query failed."""
