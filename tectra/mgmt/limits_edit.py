"""`tectractl limits set PATH VALUE`: one change to a whole limits document.

The gateway only loads whole documents (atomically, all or nothing); mgmtd turns a single
change into a whole document: the active one with the value at a dotted path replaced,
added or removed. The gateway validates the result, so this module only walks the
document's tables. Values are JSON; a bare decimal such as 0.01 is kept as the string
"0.01", because limits refuse floats (money is fixed point, decimal strings are exact).
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

_DECIMAL = re.compile(r"^-?\d+\.\d+$")
_SEGMENT = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")


class LimitsEditError(ValueError):
    """The path or value cannot be applied to the document (names which)."""


def parse_value(text: str) -> Any:
    """A value from the command line: JSON, with decimals kept exact as strings."""
    text = text.strip()
    if _DECIMAL.match(text):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        # A bare word (a mode name such as dry_run) is a string.
        return text


def split_path(path: str) -> list[str]:
    parts = path.split(".")
    if not path or not all(_SEGMENT.match(p) for p in parts):
        raise LimitsEditError(
            f"bad path {path!r}: expected dotted keys of [A-Za-z0-9_-], "
            "e.g. instruments.AAPL.max_qty"
        )
    return parts


def apply_change(
    doc: dict[str, Any], path: str, value: Any, *, remove: bool = False
) -> dict[str, Any]:
    """A copy of DOC with PATH set to VALUE (or removed); intermediate tables are created."""
    parts = split_path(path)
    out = copy.deepcopy(doc)
    node: Any = out
    for i, key in enumerate(parts[:-1]):
        child = node.get(key)
        if child is None:
            if remove:
                raise LimitsEditError(f"{'.'.join(parts[: i + 1])} does not exist")
            child = node[key] = {}
        if not isinstance(child, dict):
            raise LimitsEditError(f"{'.'.join(parts[: i + 1])} is a value, not a table")
        node = child
    last = parts[-1]
    if remove:
        if last not in node:
            raise LimitsEditError(f"{path} does not exist")
        del node[last]
    else:
        node[last] = value
    return out
