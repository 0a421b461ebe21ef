"""The one exception type whose message is shown to a user as a one-line error."""


class EdgeError(Exception):
    """A problem the user can fix; the message names the problem and the fix, on one line."""
