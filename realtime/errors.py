"""Few, flat errors (cf. aiortc's exceptions.py): callers catch BabelcallError and show its text."""


class BabelcallError(Exception):
    """Base of every error babelcall raises on purpose; the message is meant for the user."""


class ModelNotFound(BabelcallError):
    """A model named by the user (or a default) is not installed where babelcall looks."""


class EngineUnavailable(BabelcallError):
    """An engine's runtime (a Debian package, a Python extra) is missing or failed to start."""


class UnsupportedLanguage(BabelcallError):
    """An engine cannot handle the requested language or language pair."""


class BadAudio(BabelcallError):
    """Input that is not decodable audio, or audio in a shape babelcall cannot use."""


class SessionClosed(BabelcallError):
    """Audio was pushed into a session that has already ended."""
