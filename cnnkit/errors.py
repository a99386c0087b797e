"""The one exception type users see.

Anything wrong with the user's input (a missing folder, an unknown model name, a dataset with one
class) raises :class:`CnnkitError` with a message that names the culprit and says what to do. The
CLI prints that message on one line and exits with status 2 instead of showing a traceback.
"""


class CnnkitError(Exception):
    """A problem the user can fix; the message says how."""


_URL_PREFIX = r"^[A-Za-z][A-Za-z0-9+.-]+:/"  # also matches "https:/x", a URL after pathlib merged its slashes


def is_url(value: object) -> bool:
    """Whether a path the user gave is a URL (``https://...``, or that URL as pathlib mangled it)."""
    import os
    import re

    return isinstance(value, str | os.PathLike) and re.match(_URL_PREFIX, os.fspath(value)) is not None


def url_message(what: str, value: object) -> str:
    """One line for a URL where a local path belongs."""
    shown = str(value) if "://" in str(value) else str(value).replace(":/", "://", 1)
    return f"{what} {shown} is a URL: URLs are not downloaded; download it first and give the local path"


def reject_url(value: object, what: str) -> None:
    """Raise :class:`CnnkitError` when ``value`` is a URL where a local path belongs."""
    if value is not None and is_url(value):
        raise CnnkitError(url_message(what, value))
