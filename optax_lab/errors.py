"""The one error type a user should see: bad input, said in one line with its fix."""


class UsageError(Exception):
    """Bad input from the user. The CLI prints it as one line and exits with 2.

    The message names the bad value and says how to fix it, e.g.
    ``unknown preset 'lesons': choose one of lesson, gd-vs-sgd, momentum, adaptive``.
    """
