"""Typed errors for user mistakes.

The core raises these; only the command layer turns them into one line on stderr and an
exit code. Anything else that escapes is a bug and is allowed to show a traceback.
"""

from __future__ import annotations


class CharrnnError(Exception):
    """A mistake the user can fix (bad input, bad option value, bad file)."""

    exit_code = 1


class ConfigError(CharrnnError):
    """An option value is out of range or options contradict each other."""

    exit_code = 2


class CorpusError(CharrnnError):
    """A corpus cannot be read, decoded, or is unusable for training."""


class InvalidUtf8Error(CorpusError):
    """A text is not valid UTF-8 (the caller may choose to replace bad bytes instead)."""

    def __init__(self, name: str, offset: int, byte: int):
        self.name, self.offset, self.byte = name, offset, byte
        super().__init__(
            f"{name}: invalid UTF-8 at byte offset {offset} (byte 0x{byte:02x}); convert the file "
            f"to UTF-8, or replace bad bytes with U+FFFD"
        )


class CorpusTooSmallError(CorpusError):
    """The corpus has fewer tokens than one batch of windows needs.

    Carries the numbers so a front end can say which of its own options to change.
    """

    def __init__(self, split: str, tokens: int, needed: int, batch_size: int, bptt: int):
        self.split, self.tokens, self.needed = split, tokens, needed
        self.batch_size, self.bptt = batch_size, bptt
        super().__init__(
            f"the {split} split has {tokens} tokens, but batch_size={batch_size} streams of "
            f"bptt={bptt} steps need at least {needed}: lower batch_size or bptt, or use a "
            f"larger corpus"
        )


class TokenizerError(CharrnnError):
    """A tokenizer cannot be built or used."""


class CheckpointError(CharrnnError):
    """A checkpoint is missing, truncated, corrupt, foreign, or from a newer version."""


class RunExistsError(CheckpointError):
    """The output directory already holds a training run that would be overwritten."""

    def __init__(self, path):
        self.path = path
        super().__init__(f"{path}: already holds a training run; choose another output directory or allow overwriting it")


class TrainingInterrupted(CharrnnError):
    """Training was stopped by the user (Ctrl-C); the weights at ``step`` were saved."""

    exit_code = 130

    def __init__(self, step: int, saved: str | None):
        self.step, self.saved = step, saved
        where = f"; weights at this step saved to {saved}" if saved else "; nothing to save yet"
        super().__init__(f"interrupted at step {step}{where}")
