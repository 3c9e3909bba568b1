r"""Locations: a local path, or a URI of an object store / remote filesystem that must stay a string.

``pathlib.Path("gs://bucket")`` is ``gs:/bucket``; so every place that takes a location keeps a URI as
the string it was given and makes only local paths ``Path`` objects. Files at a URI are reached through
TFX's ``fileio`` / ``tf.io.gfile`` (or Beam's ``FileSystems``), never ``os`` or ``shutil``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# Where data, artifacts and models may live besides local paths: every filesystem TFX's fileio
# (tf.io.gfile) and Beam's FileSystems reach. Other schemes are refused by name.
URI_SCHEMES = ("gs", "s3", "hdfs")
URI_PATTERN = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")

# A location: a local directory as an absolute ``Path``, or a URI of ``URI_SCHEMES`` kept as a string
# (``Path("gs://bucket")`` would collapse it to ``gs:/bucket``).
Location = Path | str


def is_uri(value: str | os.PathLike) -> bool:
    """Whether ``value`` names an object-store / remote location (``scheme://…``) rather than a local path."""
    return isinstance(value, str) and URI_PATTERN.match(value) is not None


def location(value: str | os.PathLike, what: str = "path") -> Location:
    """A local path made absolute (``~`` expanded), or a URI of ``URI_SCHEMES`` kept as given (less a trailing /)."""
    if isinstance(value, str) and (match := URI_PATTERN.match(value)):
        if match["scheme"] not in URI_SCHEMES:
            schemes = ", ".join(f"{s}://" for s in URI_SCHEMES)
            raise ValueError(
                f"{what} {value!r}: scheme {match['scheme']}:// is not supported (use {schemes} or a local path)"
            )
        if len(value.rstrip("/")) <= len(match[0]):
            raise ValueError(f"{what} {value!r}: a URI needs a bucket or host after {match[0]}")
        return value.rstrip("/")
    return Path(value).expanduser().resolve()


def join(base: Location, *parts: str) -> Location:
    """``base/part/…`` for a local path or a URI alike."""
    if isinstance(base, Path):
        return base.joinpath(*parts)
    return "/".join((base, *parts))
