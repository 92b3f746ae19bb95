"""User-facing errors. The entrypoint prints them as one paragraph and exits non-zero without a
traceback; anything else is a programming error and keeps its traceback."""


class RunnerError(Exception):
    """Base class of every error caused by user input or the run's situation."""

    exit_code = 2


class ConfigError(RunnerError):
    """A config value is out of range, of the wrong type, or not supported by the algorithm."""


class CheckpointError(RunnerError):
    """A checkpoint to resume from is missing, foreign or corrupt."""


class DeviceError(RunnerError):
    """The requested device is not available on this machine."""


class StorageError(RunnerError):
    """The run's files cannot be written (a full disk, a read-only or unwritable location); what
    was already on disk is intact."""

    exit_code = 4


class EnvironmentFault(RunnerError):
    """The environment broke its own contract: observations that do not fit its declared space,
    NaN or infinite observations or rewards."""

    exit_code = 3


class NonFiniteError(RunnerError):
    """A loss became NaN or infinite; the run stops before anything is checkpointed."""

    exit_code = 3


class Interrupted(RunnerError):
    """SIGINT or SIGTERM: a checkpoint was written and the run can be resumed."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum
