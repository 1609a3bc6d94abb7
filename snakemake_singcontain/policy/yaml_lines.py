"""Read YAML into plain Python values plus the line of every key, refusing what a policy never needs.

Aliases are refused (an alias bomb expands exponentially, and a policy has no use for them), and so are
duplicate keys (PyYAML silently keeps the last one) and non-string keys.
"""

import yaml

from ..errors import PolicyError

MAX_BYTES = 1 << 20
MAX_DEPTH = 20  # a policy nests 5 levels deep; far deeper is an attack on the parser, not a policy

Lines = dict[tuple, int]


class _Loader(yaml.SafeLoader):
    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.MarkedYAMLError(None, None, "YAML aliases (*name) are not allowed in a policy", event.start_mark)
        return super().compose_node(parent, index)


def load_with_lines(raw: bytes, file: str):
    """Return (data, lines); lines maps a key path such as ("rules", "plot", "containment") to its line."""
    if len(raw) > MAX_BYTES:
        raise PolicyError(f"the policy file is {len(raw)} bytes; at most {MAX_BYTES} are read", file=file,
                          fix="a policy is a short file: move repeated settings into defaults or presets")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise PolicyError("the file is not UTF-8 text", file=file, line=line, fix="save the file as UTF-8") from None
    try:
        node = yaml.compose(text, Loader=_Loader)
    except RecursionError:
        raise PolicyError("the YAML nests too deeply", file=file, line=_deep_line(text),
                          fix="a policy needs only a few levels of nesting") from None
    except yaml.reader.ReaderError as err:
        line = text[: err.position].count("\n") + 1
        raise PolicyError(f"invalid character {chr(err.character)!r} in the file", file=file, line=line,
                          fix="remove the control character") from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        problem = err.problem or err.context or "invalid YAML"
        # PyYAML spells a tab as the two characters backslash and t in its message.
        tab = any(t in str(problem) for t in ("\t", "\\t")) or "tab" in str(problem).lower()
        fix = "indent with spaces, not tabs" if tab else "correct the YAML syntax"
        raise PolicyError(f"invalid YAML: {problem}", file=file, line=mark.line + 1 if mark else None, fix=fix) from None
    except yaml.YAMLError as err:
        raise PolicyError(f"invalid YAML: {err}", file=file, fix="correct the YAML syntax") from None
    lines: Lines = {}
    if node is None:
        return None, lines
    constructor = yaml.SafeLoader("")

    def convert(node, path):
        lines.setdefault(path, node.start_mark.line + 1)
        if len(path) > MAX_DEPTH:
            raise PolicyError("the YAML nests too deeply", file=file, line=node.start_mark.line + 1,
                              fix="a policy needs only a few levels of nesting")
        if isinstance(node, yaml.MappingNode):
            out = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
                    raise PolicyError("keys must be plain text", file=file, line=key_node.start_mark.line + 1,
                                      fix="quote the key")
                key = key_node.value
                if key in out:
                    raise PolicyError(f"duplicate key {key!r}", file=file, line=key_node.start_mark.line + 1,
                                      fix=f"keep one {key!r} entry; merge the two")
                lines[path + (key,)] = key_node.start_mark.line + 1
                out[key] = convert(value_node, path + (key,))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [convert(item, path + (i,)) for i, item in enumerate(node.value)]
        try:
            return constructor.construct_object(node, deep=True)
        except yaml.YAMLError as err:
            raise PolicyError(f"invalid value: {err}", file=file, line=node.start_mark.line + 1,
                              fix="correct the value") from None

    return convert(node, ()), lines


def _deep_line(text: str) -> int | None:
    """The first line where flow brackets nest deeper than a policy ever needs (PyYAML's own recursion
    error carries no position)."""
    depth = 0
    for number, line in enumerate(text.splitlines(), 1):
        for char in line:
            depth += (char in "[{") - (char in "]}")
            if depth > MAX_DEPTH:
                return number
    return None
