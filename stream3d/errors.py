"""The one exception type for bad user input; the CLI prints it as one line, exit code 2."""


class UserError(ValueError):
    """Input the user can fix (a bad file, key, value or path); the message says what."""
