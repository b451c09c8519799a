"""The exception for bad user input.

Everything the user can get wrong (a missing file, a malformed data set, an impossible setting)
raises `InputError` with a one-line message that names the file and the problem; the command-line
scripts print that line and exit with status 2 instead of showing a traceback.
"""


class InputError(ValueError):
    """Bad user input; the message is one line that names the file (or option) and the problem."""
