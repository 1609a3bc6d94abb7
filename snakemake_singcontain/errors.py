"""The one exception a user sees: a policy mistake, told as file:line, what is wrong and the fix."""


class PolicyError(Exception):
    def __init__(self, message: str, *, file: str, line: int | None = None, fix: str = ""):
        self.message, self.file, self.line, self.fix = message, file, line, fix
        super().__init__(self.render())

    def render(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        text = f"{where}: {self.message}"
        return f"{text}\n  fix: {self.fix}" if self.fix else text
