"""The one exception type for problems the user can fix (bad flag, profile, file, dataset, token)."""


class UserError(Exception):
    """Something the user can fix; `cli.main` prints it without a traceback and exits with code 2."""

    def __init__(self, message: str, hint: str = "", setting: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.setting = setting  # KEY=VALUE that fixes it, where one does: a front end offers it to apply

    def __str__(self) -> str:
        return f"{self.message}\n{self.hint}" if self.hint else self.message


class Stopped(Exception):
    """Training stopped on a signal after saving a checkpoint; the process exits with 128 + the signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by signal {signum}")
        self.exit_code = 128 + signum
