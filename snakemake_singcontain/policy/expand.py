"""`${VAR}` and `${VAR:-default}` (defaults may nest: `${DUST:-/nfs/dust/${USER}}`); `$$` is a literal `$`."""

from collections.abc import Mapping


class UnsetVariable(Exception):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


class BadSyntax(Exception):
    pass


MAX_NESTING = 8


def expand(text: str, env: Mapping[str, str]) -> str:
    value, _ = _expand(text, 0, env, depth=0, used=True, defaulted=[])
    return value


def defaulted(text: str, env: Mapping[str, str]) -> tuple[str, ...]:
    """The variables of `text` that are unset (or empty) and whose default was taken, outermost first:
    `${CVMFS_ROOT:-/cvmfs}` without CVMFS_ROOT -> ("CVMFS_ROOT",). Messages about the result name them."""
    names: list[str] = []
    _expand(text, 0, env, depth=0, used=True, defaulted=names)
    return tuple(dict.fromkeys(names))


def _expand(text: str, pos: int, env: Mapping[str, str], depth: int, used: bool,
            defaulted: list[str]) -> tuple[str, int]:
    """`used` is False while reading a default that is not taken: it is parsed, but an unset variable
    inside it is no error (as in the shell)."""
    if depth > MAX_NESTING:
        raise BadSyntax(f"defaults nest more than {MAX_NESTING} levels deep")
    nested = depth > 0
    out = []
    while pos < len(text):
        char = text[pos]
        if nested and char == "}":
            return "".join(out), pos
        if char != "$":
            out.append(char)
            pos += 1
        elif text.startswith("$$", pos):
            out.append("$")
            pos += 2
        elif text.startswith("${", pos):
            value, pos = _variable(text, pos + 2, env, depth, used, defaulted)
            out.append(value)
        else:
            raise BadSyntax(f"a lone '$' at character {pos + 1}; write ${{NAME}} for a variable or $$ for a '$'")
    if nested:
        raise BadSyntax("a '${' is never closed with '}'")
    return "".join(out), pos


def _variable(text: str, pos: int, env: Mapping[str, str], depth: int, used: bool,
              defaulted: list[str]) -> tuple[str, int]:
    start = pos
    while pos < len(text) and (text[pos].isalnum() or text[pos] == "_"):
        pos += 1
    name = text[start:pos]
    if not name or name[0].isdigit():
        raise BadSyntax(f"'${{{text[start:pos + 1]}' does not start a variable name")
    if text.startswith(":-", pos):
        value = env.get(name)
        if used and not value:
            defaulted.append(name)
        default, pos = _expand(text, pos + 2, env, depth + 1, used and not value, defaulted)
        value = value or default
    elif text.startswith("}", pos):
        if name not in env and used:
            raise UnsetVariable(name)
        value = env.get(name, "")
    else:
        raise BadSyntax(f"after ${{{name} expected '}}' or ':-default}}'")
    return value, pos + 1
