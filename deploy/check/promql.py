"""The series a PromQL expression selects, with their label matchers: enough of PromQL's
lexical structure to tell metric names from functions, keywords, grouping labels and
durations. Syntax itself is promtool's job (check.py runs every expression through
`promtool check rules`); this only answers "which metrics does it read?".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TOKEN = re.compile(
    r"""
    (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<number>0x[0-9a-fA-F]+|[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?[a-zA-Z]*)
  | (?P<var>\$\{?[A-Za-z_][A-Za-z0-9_]*\}?)
  | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=,(){}\[\]@])
  | (?P<space>\s+)
    """,
    re.X,
)

KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
    "group_right", "bool", "offset", "atan2", "inf", "nan",
}
# Aggregation operators: the grouping clause may come between the name and its "(".
AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}
# Keywords followed by a parenthesised list of label names, not expressions.
LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}


@dataclass
class Selector:
    metric: str
    # label -> (operator, value)
    matchers: dict[str, tuple[str, str]]


class PromQLError(ValueError):
    """An expression this reader cannot follow (promtool reports the exact syntax error)."""


def tokens(expr: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if not m:
            raise PromQLError(f"unexpected {expr[pos:pos + 20]!r} at {pos} in {expr!r}")
        pos = m.end()
        if m.lastgroup != "space":
            out.append((m.lastgroup, m.group()))
    return out


def selectors(expr: str) -> list[Selector]:
    """Every series selector in `expr`, in order."""
    toks = tokens(expr)
    found: list[Selector] = []
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else None
        if kind == "op" and text == "[":
            # A range or subquery duration: skip to the bracket's end.
            while i < len(toks) and toks[i][1] != "]":
                i += 1
        elif kind == "op" and text == "{":
            raise PromQLError(f"a selector without a metric name in {expr!r}")
        elif kind == "ident" and text.lower() in KEYWORDS:
            if text in LABEL_LISTS and nxt == "(":
                while i < len(toks) and toks[i][1] != ")":
                    i += 1
            elif text == "offset":
                i += 1
        elif kind == "ident" and (nxt == "(" or (text in AGGREGATIONS and nxt in LABEL_LISTS)):
            pass  # a function or an aggregation
        elif kind == "ident":
            matchers: dict[str, tuple[str, str]] = {}
            if nxt == "{":
                i += 2
                while i < len(toks) and toks[i][1] != "}":
                    if toks[i][1] == ",":
                        i += 1
                        continue
                    if i + 2 >= len(toks) or toks[i][0] != "ident" or toks[i + 2][0] != "string":
                        raise PromQLError(f"unreadable label matcher in {expr!r}")
                    matchers[toks[i][1]] = (toks[i + 1][1], toks[i + 2][1][1:-1])
                    i += 3
            found.append(Selector(text, matchers))
        i += 1
    return found
