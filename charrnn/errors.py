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


class ResumeMismatchError(ConfigError):
    """Options given to a resumed run disagree with the run. ``fields`` holds
    (name, value in the run, value given) for each, so a front end can name its options."""

    def __init__(self, fields: list[tuple[str, object, object]]):
        self.fields = fields
        parts = ", ".join(f"{name}={given!r} (the run has {saved!r})" for name, saved, given in fields)
        super().__init__(f"cannot resume with different settings: {parts}")


class TrainingInterrupted(CharrnnError):
    """Training was stopped by a signal (Ctrl-C or SIGTERM).

    Normally the current step was saved to ``saved``. ``forced`` means a second signal cut
    the stop short: nothing new was saved and ``saved`` is the last complete checkpoint.
    The exit code follows the shell convention, 128 + the signal number.
    """

    def __init__(self, step: int, saved: str | None, signum: int = 2, forced: bool = False,
                 saved_step: int | None = None):
        self.step, self.saved, self.signum, self.forced = step, saved, signum, forced
        self.exit_code = 128 + signum
        word = {2: "interrupted", 15: "terminated (SIGTERM)"}.get(signum, f"stopped by signal {signum}")
        if forced:
            last = f"{saved} holds step {saved_step}" if saved else "no checkpoint was written yet"
            msg = f"{word} again at step {step}: stopped at once without saving; {last}"
        elif saved:
            msg = f"{word} at step {step}; saved to {saved}"
        else:
            msg = f"{word} at step {step}; nothing to save yet"
        super().__init__(msg)


class TrainingDiverged(CharrnnError):
    """Training kept producing non-finite losses or gradients after every rollback."""


