"""The one error hierarchy. Front ends map DiffucodeError to exit code 2 (CLI) or a JSON-RPC error (LSP)."""


class DiffucodeError(Exception):
    """Base class: a problem with the user's input or environment, reported in one line."""


class SpanError(DiffucodeError):
    """A range that does not fit the text: reversed, past the end, overlapping another hole."""


class InputFileError(DiffucodeError):
    """A file that cannot be used: missing, a directory, binary, or not UTF-8."""


class CheckpointError(DiffucodeError):
    """A model folder that is missing, incomplete, corrupt, or of an unknown format."""


class ConfigError(DiffucodeError):
    """A setting with a value that cannot work (unknown strategy, steps < 1, ...)."""


class GenerationCancelled(DiffucodeError):
    """Raised inside the sampler when a caller's callback asks to stop."""


class NoValidCandidate(DiffucodeError):
    """Every candidate failed validation (the CLI exits 1 for this one)."""
