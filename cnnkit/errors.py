"""The one exception type users see.

Anything wrong with the user's input (a missing folder, an unknown model name, a dataset with one
class) raises :class:`CnnkitError` with a message that names the culprit and says what to do. The
CLI prints that message on one line and exits with status 2 instead of showing a traceback.
"""


class CnnkitError(Exception):
    """A problem the user can fix; the message says how."""
