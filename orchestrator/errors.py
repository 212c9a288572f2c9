"""Errors that are the user's to fix: printed as one line, no traceback."""


class UserError(Exception):
    """A bad value, key or address, with what is allowed; raised before anything is launched or written."""
