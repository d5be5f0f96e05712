"""Parse rule expression text into :mod:`riskstream.rules.ast` nodes with lark (LALR, never eval).

Syntax errors become :class:`ExpressionError` with the 1-based column and what was expected there.
"""

from __future__ import annotations

import re
from functools import lru_cache

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from riskstream.errors import RiskstreamError
from riskstream.rules.ast import (
    Binary,
    Call,
    Feature,
    ListLiteral,
    Literal,
    Membership,
    ModelRef,
    Name,
    Node,
    Unary,
)


class ExpressionError(RiskstreamError):
    """A rule expression is invalid: ``col`` is the 1-based character position, ``message`` the reason.

    The spec loader turns it into ``SpecError(path, f"col {col}: {message}")``.
    """

    def __init__(self, col: int, message: str) -> None:
        self.col = col
        self.message = message
        super().__init__(f"col {col}: {message}")


_GRAMMAR = r"""
?start: or_expr
?or_expr: and_expr (OR and_expr)*
?and_expr: not_expr (AND not_expr)*
?not_expr: NOT not_expr -> not_op
         | comparison
?comparison: sum
           | sum COMP_OP sum -> compare
           | sum IN sum -> in_op
           | sum NOT IN sum -> not_in_op
?sum: product ((PLUS | MINUS) product)*
?product: unary ((STAR | SLASH) unary)*
?unary: MINUS unary -> neg
      | atom
?atom: NUMBER -> number
     | STRING -> string
     | TRUE -> true
     | FALSE -> false
     | NULL -> null
     | NAME -> name
     | NAME DOT NAME LPAR WINDOW RPAR -> feature
     | NAME DOT NAME -> dotted
     | NAME LPAR [or_expr (COMMA or_expr)*] RPAR -> call
     | LSQB [item (COMMA item)*] RSQB -> list_lit
     | LPAR or_expr RPAR
item: STRING | NUMBER | MINUS NUMBER

OR.2: /or\b/i
AND.2: /and\b/i
NOT.2: /not\b/i
IN.2: /in\b/i
TRUE.2: /true\b/i
FALSE.2: /false\b/i
NULL.2: /null\b/i
NAME: /[A-Za-z_][A-Za-z0-9_]*/
NUMBER: /(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?/
STRING: /'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"/
WINDOW: /[0-9A-Za-z_.]+/
COMP_OP: /==|!=|<=|>=|<|>/
PLUS: "+"
MINUS: "-"
STAR: "*"
SLASH: "/"
DOT: "."
LPAR: "("
RPAR: ")"
LSQB: "["
RSQB: "]"
COMMA: ","
%ignore /\s+/
"""

#: What an expected terminal is called in an error message.
_TERMINAL_WORDS: dict[str, str] = {
    "RPAR": "')'",
    "RSQB": "']'",
    "COMMA": "','",
    "LPAR": "'('",
    "DOT": "'.'",
    "WINDOW": "a window like 5m",
    "IN": "'in'",
    "$END": "end of expression",
}
#: Terminals that can start a value: when any is expected we just say "a value".
_OPERATORS = frozenset({"COMP_OP", "PLUS", "STAR", "SLASH", "AND", "OR"})
_CHAR_HINTS: dict[str, str] = {
    "=": "use '==' to compare",
    "&": "use 'and'",
    "|": "use 'or'",
    "!": "use 'not' or '!='",
}
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}


@lru_cache(maxsize=1)
def _parser() -> Lark:
    """The LALR parser, built once (contextual lexer: windows like ``7x`` lex only inside features)."""
    return Lark(_GRAMMAR, parser="lalr", lexer="contextual", maybe_placeholders=False)


#: Complexity bound of one expression (documented in the README): characters, nesting depth
#: of the syntax tree, and its number of nodes. Compiled size is linear in the node count.
MAX_CHARS = 2_000
MAX_DEPTH = 40
MAX_NODES = 400
_MAX_NUMBER_CHARS = 40


def parse(text: str) -> Node:
    """Parse ``text`` into a syntax tree; raises :class:`ExpressionError` on a syntax error.

    Expressions over the complexity bound (:data:`MAX_CHARS`, :data:`MAX_DEPTH`,
    :data:`MAX_NODES`) are refused with one line, before any recursive step can blow up.
    """
    if len(text) > MAX_CHARS:
        raise ExpressionError(
            MAX_CHARS + 1, f"expression longer than {MAX_CHARS} characters ({len(text)})"
        )
    _check_brackets(text)
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(text, exc) from None
    for dotted in tree.find_data("dotted"):
        first, _dot, last = (t for t in dotted.children if isinstance(t, Token))
        if first.value != "model":  # ``metric.stat`` without its window
            raise _missing_window(text, (last.end_pos or 0))
    try:
        node = _build(tree)
    except RecursionError:
        raise ExpressionError(1, f"expression nested more than {MAX_DEPTH} levels deep") from None
    _check_size(node)
    return node


_QUOTED = re.compile(r"'(?:[^'\\\n]|\\.)*'|\"(?:[^\"\\\n]|\\.)*\"")


def _check_brackets(text: str) -> None:
    """ExpressionError when parentheses/brackets (outside string literals) nest too deep."""
    depth = 0
    for col, ch in enumerate(_QUOTED.sub(lambda m: "_" * len(m.group()), text), start=1):
        if ch in "([":
            depth += 1
            if depth > MAX_DEPTH:
                raise ExpressionError(col, f"expression nested more than {MAX_DEPTH} levels deep")
        elif ch in ")]":
            depth -= 1


def _check_size(root: Node) -> None:
    """ExpressionError when the tree is deeper than MAX_DEPTH or larger than MAX_NODES."""
    count = 0
    stack: list[tuple[Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH:
            raise ExpressionError(node.col, f"expression nested more than {MAX_DEPTH} levels deep")
        if count > MAX_NODES:
            raise ExpressionError(
                node.col, f"expression too complex: more than {MAX_NODES} terms and operators"
            )
        kids: tuple[Node, ...] = ()
        if isinstance(node, Binary | Membership):
            kids = (node.left, node.right)
        elif isinstance(node, Unary):
            kids = (node.operand,)
        elif isinstance(node, Call):
            kids = node.args
        elif isinstance(node, ListLiteral):
            kids = node.items
        stack.extend((k, depth + 1) for k in kids)


def _missing_window(text: str, end: int) -> ExpressionError:
    """``card.count`` with no ``(window)``: said as the parser says other missing tokens."""
    rest = text[end:]
    pos = end + len(rest) - len(rest.lstrip())
    if pos >= len(text):
        return ExpressionError(len(text) + 1, "unexpected end of expression; expected '('")
    word = re.match(r"\w+|\S", text[pos:])
    found = word.group(0) if word else text[pos]
    what = f"name {found!r}" if found[0].isalpha() or found[0] == "_" else repr(found)
    return ExpressionError(pos + 1, f"unexpected {what}; expected '('")


def _expected_words(expected: set[str] | frozenset[str]) -> str:
    """Summarise lark's expected terminal names as a short phrase."""
    words: list[str] = []
    if "NAME" in expected:
        words.append("a value")
    elif expected & {"STRING", "NUMBER"}:
        words.append("a string or a number")
    elif "LSQB" in expected:
        words.append("a list")
    if expected & _OPERATORS:
        words.append("an operator")
    for name in ("DOT", "RPAR", "RSQB", "COMMA", "WINDOW", "IN", "$END"):
        if name in expected:
            words.append(_TERMINAL_WORDS[name])
    if "LPAR" in expected and "NAME" not in expected:
        words.append("'('")
    return " or ".join(words) if words else "something else"


def _accepted(exc: UnexpectedToken | UnexpectedCharacters) -> set[str]:
    """The terminals really acceptable where the error happened (LALR's own set over-approximates)."""
    fallback = set(exc.expected if isinstance(exc, UnexpectedToken) else exc.allowed or ())
    parser = getattr(exc, "interactive_parser", None)
    if parser is None:  # pragma: no cover - lark's LALR parser always attaches one
        return fallback
    try:
        return set(parser.accepts()) or fallback
    except Exception:  # pragma: no cover - fall back to lark's set
        return fallback


def _describe(token: Token) -> str:
    """How an unexpected token is shown: ``'>'``, ``name 'x'``, ``number 5``."""
    if token.type == "NAME":
        return f"name {token.value!r}"
    if token.type == "NUMBER":
        return f"number {token.value}"
    if token.type == "STRING":
        return f"string {token.value}"
    return repr(str(token.value))


def _syntax_error(text: str, exc: UnexpectedInput) -> ExpressionError:
    """Turn a lark error into an ExpressionError saying what was expected at which column."""
    if isinstance(exc, UnexpectedToken):
        if exc.token.type == "$END":
            col = len(text) + 1
            found = "end of expression"
        else:
            col = (exc.token.start_pos or 0) + 1
            found = _describe(exc.token)
        return ExpressionError(
            col, f"unexpected {found}; expected {_expected_words(_accepted(exc))}"
        )
    if isinstance(exc, UnexpectedCharacters):
        pos = exc.pos_in_stream or 0
        char = text[pos] if pos < len(text) else ""
        col = pos + 1
        if char in "'\"":
            return ExpressionError(col, "unterminated string")
        hint = _CHAR_HINTS.get(char)
        if hint is None or text.startswith("!=", pos):
            hint = f"expected {_expected_words(_accepted(exc))}"
        return ExpressionError(col, f"unexpected character {char!r}; {hint}")
    # lark's LALR parser raises only the two kinds above
    return ExpressionError(1, f"syntax error: {exc}")  # pragma: no cover


def _col(item: Tree[Token] | Token) -> int:
    """1-based position of the first character of a token or subtree."""
    while isinstance(item, Tree):
        item = item.children[0]
    return (item.start_pos or 0) + 1


def _unquote(raw: str) -> str:
    """Decode a quoted string literal: strip the quotes, resolve ``\\n \\t \\\\ \\'`` escapes."""
    return _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), raw[1:-1])


def _number(raw: str, col: int = 1) -> int | float:
    """``12`` -> int, ``1.5`` / ``1e3`` -> float; absurdly long numbers are refused."""
    if len(raw) > _MAX_NUMBER_CHARS:
        raise ExpressionError(col, f"number longer than {_MAX_NUMBER_CHARS} characters")
    value = int(raw) if raw.isdigit() else float(raw)
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        return float(value)
    return value


def _item(tree: Tree[Token]) -> Literal:
    """One element of an inline list literal."""
    tokens = [t for t in tree.children if isinstance(t, Token)]
    first = tokens[0]
    if first.type == "STRING":
        return Literal(_col(first), _unquote(first.value))
    if first.type == "MINUS":
        return Literal(_col(first), -_number(tokens[1].value, _col(first)))
    return Literal(_col(first), _number(first.value, _col(first)))


def _build(item: Tree[Token] | Token) -> Node:
    """Convert a lark subtree (or a lone token) into a syntax node."""
    if isinstance(item, Token):  # pragma: no cover - every token is wrapped by an alias rule
        raise AssertionError(f"unexpected token {item!r}")
    kind = item.data
    kids = item.children
    if kind in ("or_expr", "and_expr", "sum", "product"):
        node = _build(kids[0])
        for i in range(1, len(kids), 2):
            op = kids[i]
            assert isinstance(op, Token)
            node = Binary(_col(op), op.value.lower(), node, _build(kids[i + 1]))
        return node
    tokens = [k for k in kids if isinstance(k, Token)]
    subtrees = [k for k in kids if isinstance(k, Tree)]
    if kind == "atom":  # parenthesised expression
        return _build(subtrees[0])
    if kind == "number":
        return Literal(_col(item), _number(tokens[0].value, _col(item)))
    if kind == "string":
        return Literal(_col(item), _unquote(tokens[0].value))
    if kind in ("true", "false"):
        return Literal(_col(item), kind == "true")
    if kind == "null":
        return Literal(_col(item), None)
    if kind == "name":
        return Name(_col(item), tokens[0].value)
    if kind == "feature":
        metric, _dot, stat, _lpar, window, _rpar = tokens
        return Feature(
            _col(metric), metric.value, stat.value, window.value, _col(stat), _col(window)
        )
    if kind == "dotted":
        return ModelRef(_col(item), tokens[2].value)
    if kind == "call":
        return Call(_col(item), tokens[0].value, tuple(_build(t) for t in subtrees))
    if kind == "list_lit":
        return ListLiteral(_col(item), tuple(_item(t) for t in subtrees))
    if kind == "not_op":
        return Unary(_col(tokens[0]), "not", _build(kids[1]))
    if kind == "neg":
        return Unary(_col(tokens[0]), "-", _build(kids[1]))
    if kind == "compare":
        return Binary(_col(tokens[0]), tokens[0].value, _build(kids[0]), _build(kids[2]))
    if kind == "in_op":
        return Membership(_col(tokens[0]), False, _build(kids[0]), _build(kids[2]))
    if kind == "not_in_op":
        return Membership(_col(tokens[0]), True, _build(kids[0]), _build(kids[3]))
    raise AssertionError(f"unknown parse node {kind}")  # pragma: no cover
