"""User-facing data errors.

A :class:`DataError` carries one line meant for the person running the tool: it names the file
(or directory) and what is wrong with it. Entry points print it without a traceback and exit
non-zero; anything else that escapes is a bug and keeps its traceback.
"""


class DataError(Exception):
    """A problem with the user's data: a missing root, a malformed file, an unreadable image."""
