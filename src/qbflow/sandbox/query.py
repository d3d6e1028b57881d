"""QBO's query language: parse a SELECT statement once, then filter, order and page records with it.

Grammar (keywords case-insensitive; whitespace, including newlines, is free)::

    query      := SELECT [ "*" | COUNT "(" "*" ")" ] FROM Entity
                  [ WHERE condition { (AND | OR) condition } ]
                  [ (ORDERBY | ORDER BY) order_item { "," order_item } ]
                  [ STARTPOSITION n [ MAXRESULTS m ] | MAXRESULTS m [ STARTPOSITION n ] ]
    condition  := [ NOT ] property op value
                | [ NOT ] property IN "(" value { "," value } ")"
    op         := "=" | "!=" | "<" | ">" | "<=" | ">=" | LIKE
    order_item := property [ ASC | DESC ]
    property   := Name { "." Name }                       e.g. MetaData.LastUpdatedTime
    value      := 'single quoted'  (\\' is a quote, \\\\ a backslash)  | 123 | 12.50 | true | false

OR is in the grammar only so that it can be refused with a validation fault, the way QBO refuses it (its
parser lists <OR> among the tokens it expects after a condition, yet the docs say OR is unsupported).

Facts this module follows, and where they come from (see also ../shared/qbo/README.md §3):

* Faults. A statement that does not parse: code 4000, Message "Error parsing query", Detail in JavaCC's
  format, e.g. ``QueryParserError: Encountered " <IDENTIFIER> "R "" at line 1, column 52.``
  [mcohen01/node-quickbooks#56, ruckus/quickbooks-ruby#471; a live-sandbox body quoted in a public test
  suite ends right after "column 29.", without the older "Was expecting one of:" list, so we stop there
  too]. Lexical errors: ``QueryParserError: Invalid content. Lexical error at line 1, column 44.
  Encountered: "%" (37), after : ""`` [pbrink231/quickbooks-node-promise#1]. An empty statement:
  ``QueryParserError: The query provided was empty`` [intuit/QuickBooks-V3-PHP-SDK#8].
  A statement that parses but is wrong: code 4001, Message "Invalid query", Detail
  ``QueryValidationError: invalid context declaration: Custmoer`` (recordings/error/400.yml),
  ``... value 0 is too small. Min allowed value is 1`` (quickbooks-ruby fixture query_validation_error.xml),
  ``... value 1500 is too large. Max allowed value is 1000`` (quickbooks-ruby#24),
  ``... property 'PrimaryEmailAddr' is not queryable`` (quickbooks-ruby#403, QuickBooks-V3-DotNET-SDK#163),
  ``... Property NoSuchField not found for Entity Purchase`` (live-sandbox body in a public test suite).
* Entity names match case-insensitively in practice, although the docs say "case sensitive":
  node-quickbooks has always sent ``select * from account`` / ``billPayment``, and a 2025 production
  probe found ``FROM customer`` accepted. Query.entity carries the canonical spelling.
* String = and LIKE ignore case: the same probe found DisplayName = 'gustavo roldan', 'GUSTAVO ROLDAN'
  and LIKE 'gust%' all matching 'Gustavo Roldan'. The same probe found ``!=`` and ``NOT`` accepted,
  ``<>`` and OR refused, and ``SELECT FROM Customer`` (no ``*``) accepted, which the docs' own sample URL
  uses. Property names are looked up case-insensitively, since Intuit's docs spell
  ``Metadata.LastUpdatedTime`` while the JSON says ``MetaData``.
* Default order (no ORDERBY): real sandbox recordings list Customer by FullyQualifiedName (a sub-customer
  follows its parent) and Vendor and Employee by DisplayName, comparing code points ("PG&E" before
  "Pam Seitz"), and leave out inactive vendors (the caller's Active filter). Transactions come back in
  no order we could explain (recordings/all/sales_receipts.yml), so for them we use Id ascending.
* "Null is represented as the string ' '" [docs data-queries]: a lone space as the value of = or IN
  matches a record that lacks the property.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime
from typing import Any, Final

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from qbflow.sandbox.clock import COMPANY_TZ

__all__ = [
    "DEFAULT_MAX_RESULTS",
    "MAX_MAX_RESULTS",
    "Condition",
    "Query",
    "QueryError",
    "matches",
    "parse_query",
    "select",
]

DEFAULT_MAX_RESULTS: Final = 100  # QBO's page size when MAXRESULTS is omitted
MAX_MAX_RESULTS: Final = 1000  # larger values are a 4001 fault, never silently clipped

PARSE_ERROR_CODE: Final = "4000"
PARSE_ERROR_MESSAGE: Final = "Error parsing query"
VALIDATION_ERROR_CODE: Final = "4001"
VALIDATION_ERROR_MESSAGE: Final = "Invalid query"


class QueryError(Exception):
    """A query QBO would refuse; `code`, `message` and `detail` are the Fault.Error fields."""

    def __init__(self, code: str, message: str, detail: str) -> None:
        super().__init__(f"{code} {message}: {detail}")
        self.code = code
        self.message = message
        self.detail = detail


def _parse_error(detail: str) -> QueryError:
    return QueryError(PARSE_ERROR_CODE, PARSE_ERROR_MESSAGE, f"QueryParserError: {detail}")


def _validation_error(detail: str) -> QueryError:
    return QueryError(VALIDATION_ERROR_CODE, VALIDATION_ERROR_MESSAGE, f"QueryValidationError: {detail}")


# ---------------------------------------------------------------------------------------------------------
# Grammar
# ---------------------------------------------------------------------------------------------------------

# Keywords are regexes with a word boundary and a higher priority than IDENTIFIER, so that "select" is a
# keyword but "Selection" is a name. The basic (non-contextual) lexer is used on purpose: it tokenizes the
# same way whatever the parser expects, so a misplaced keyword is reported as an unexpected token (QBO's
# "Encountered ...") rather than as a lexical error.
_KEYWORDS: Final = (
    "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDERBY", "ORDER", "BY", "ASC", "DESC",
    "STARTPOSITION", "MAXRESULTS", "COUNT", "TRUE", "FALSE",
)
_GRAMMAR: Final = (
    r"""
start: SELECT projection? FROM IDENTIFIER where_clause? order_clause? paging?

projection: STAR (COMMA IDENTIFIER)*              -> select_all
          | IDENTIFIER (COMMA IDENTIFIER)*        -> select_fields
          | COUNT LPAR STAR RPAR                  -> select_count

where_clause: WHERE condition ((AND | OR) condition)*
condition: NOT? IDENTIFIER comparison value                     -> compare
         | NOT? IDENTIFIER IN LPAR value (COMMA value)* RPAR   -> in_list
comparison: EQ | NE | LT | GT | LE | GE | LIKE
value: STRING | NUMBER | TRUE | FALSE

order_clause: (ORDERBY | ORDER BY) order_item (COMMA order_item)*
order_item: IDENTIFIER (ASC | DESC)?

paging: start_position max_results? | max_results start_position?
start_position: STARTPOSITION NUMBER
max_results: MAXRESULTS NUMBER

IDENTIFIER: /[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*/
STRING: /'(?:[^'\\]|\\.)*'/s
NUMBER: /-?[0-9]+(\.[0-9]+)?/
STAR: "*"
LPAR: "("
RPAR: ")"
COMMA: ","
LE: "<="
GE: ">="
NE: "!="
LT: "<"
GT: ">"
EQ: "="
%ignore /\s+/
"""
    + "\n".join(f"{kw}.2: /{kw.lower()}\\b/i" for kw in _KEYWORDS)
    + "\n"
)

_PARSER: Final = Lark(_GRAMMAR, parser="lalr", lexer="basic")

# How JavaCC (which QBO's parser is built with) names each kind of token in "Encountered ..." messages:
# named tokens in angle brackets (<IDENTIFIER>, <STRING>, <AND>, <OR> are seen on the wire), literal
# keywords as their lower-case image in double quotes ("orderby", "maxresults" are seen on the wire).
_NAMED_TOKENS: Final = {"IDENTIFIER": "<IDENTIFIER>", "STRING": "<STRING>", "AND": "<AND>", "OR": "<OR>"}
_PUNCTUATION: Final = {
    "STAR": "*", "LPAR": "(", "RPAR": ")", "COMMA": ",", "LE": "<=", "GE": ">=", "NE": "!=", "LT": "<",
    "GT": ">", "EQ": "=",
}


def _token_kind(token: Token) -> str:
    if token.type in _NAMED_TOKENS:
        return _NAMED_TOKENS[token.type]
    if token.type == "NUMBER":
        # UNVERIFIED: we have never seen QBO name its number tokens; these are JavaCC's customary names.
        return "<DECIMAL>" if "." in token.value else "<INTEGER>"
    if token.type in _PUNCTUATION:
        return f'"{_PUNCTUATION[token.type]}"'
    return f'"{token.type.lower()}"'


def _javacc_escape(text: str) -> str:
    """JavaCC's ParseException.add_escapes, so token images read exactly as QBO prints them."""
    escapes = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"', "'": "\\'",
               "\\": "\\\\"}
    out = []
    for ch in text:
        if ch in escapes:
            out.append(escapes[ch])
        elif ord(ch) < 0x20 or ord(ch) > 0x7E:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def _end_position(text: str) -> tuple[int, int]:
    """Line and column of the last character, where JavaCC places the <EOF> token."""
    last = len(text) - 1
    line = text.count("\n", 0, last) + 1
    column = last - text.rfind("\n", 0, last)
    return line, column


def _unexpected(token: Token) -> QueryError:
    """JavaCC's ParseException message for one unexpected token (QBO prints one token of context)."""
    image = _javacc_escape(str(token.value))
    return _parse_error(
        f'Encountered " {_token_kind(token)} "{image} "" at line {token.line}, column {token.column}.'
    )


def _syntax_fault(text: str, exc: UnexpectedInput) -> QueryError:
    if isinstance(exc, UnexpectedToken):
        token = exc.token
        if token.type == "$END":
            line, column = _end_position(text)
            return _parse_error(f'Encountered "<EOF>" at line {line}, column {column}.')
        return _unexpected(token)
    if isinstance(exc, UnexpectedCharacters):
        if exc.char == "'":
            # An unterminated string: JavaCC reads to the end of input before it gives up.
            line, column = _end_position(text)
            after = _javacc_escape(text[exc.pos_in_stream:])
            return _parse_error(
                f"Invalid content. Lexical error at line {line}, column {column}.  "
                f'Encountered: <EOF> after : "{after}"'
            )
        return _parse_error(
            f"Invalid content. Lexical error at line {exc.line}, column {exc.column}.  "
            f'Encountered: "{_javacc_escape(exc.char)}" ({ord(exc.char)}), after : ""'
        )
    return _parse_error(str(exc))  # pragma: no cover - LALR raises only the two kinds above


# ---------------------------------------------------------------------------------------------------------
# Parsed form
# ---------------------------------------------------------------------------------------------------------

Scalar = str | int | float | bool


@dataclass(frozen=True)
class Condition:
    """One WHERE condition. `values` has one element except for IN; strings are already unescaped."""

    field: str  # as written, e.g. "Metadata.LastUpdatedTime"
    path: tuple[str, ...]  # normalized, e.g. ("MetaData", "LastUpdatedTime")
    op: str  # "=", "!=", "<", ">", "<=", ">=", "LIKE" or "IN"
    values: tuple[Scalar, ...]
    negated: bool = False  # written with a leading NOT
    like_pattern: str | None = dataclass_field(default=None, repr=False)  # LIKE only: regex of the value


Predicate = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True)
class Query:
    """A parsed, validated SELECT. Build it with parse_query(); run it with select() or matches()."""

    entity: str
    count: bool
    conditions: tuple[Condition, ...]
    order_by: tuple[tuple[tuple[str, ...], bool], ...]  # (path, descending)
    start_position: int = 1
    max_results: int = DEFAULT_MAX_RESULTS
    # Compiled once at parse time (and so cached with the Query), never compared.
    _predicate: Predicate | None = dataclass_field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        # A Query built by hand (not by parse_query) still gets its conditions compiled.
        if self._predicate is None and self.conditions:
            object.__setattr__(self, "_predicate", _compile_conditions(self.conditions))

    def filters_on(self, field: str) -> bool:
        """Whether a WHERE condition is about top-level property `field` (case-insensitive, like QBO)."""
        wanted = field.lower()
        return any(cond.path[0].lower() == wanted for cond in self.conditions)


# ---------------------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------------------

_MISSING: Final = object()

_NUMBER_RE: Final = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")
# Only strings shaped like ISO dates are treated as instants; fromisoformat alone would also take
# "20240601", which is a plausible DocNumber.
_DATE_RE: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?(Z|[+-][0-9]{2}(:?[0-9]{2})?)?)?"
)


@functools.lru_cache(maxsize=1 << 16)
def _instant(text: str) -> float | None:
    """Epoch seconds of a QBO date or datetime string, or None if it is not one.

    A date means midnight, and a datetime without an offset is read in the company's zone, as QBO
    shows its sandbox companies' times (UNVERIFIED which zone QBO itself assumes). Cached because the
    same MetaData strings are compared on every query.
    """
    if not _DATE_RE.fullmatch(text):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=COMPANY_TZ)
    return moment.timestamp()


@dataclass(frozen=True, slots=True)
class _Operand:
    """A query value pre-parsed into every form a record value might be compared with."""

    text: str
    folded: str
    number: float | None
    integer: int | None
    instant: float | None
    boolean: bool | None
    is_null: bool

    @classmethod
    def of(cls, value: Scalar) -> _Operand:
        if isinstance(value, bool):
            text = "true" if value else "false"
            return cls(text, text, None, None, None, value, False)
        if isinstance(value, int | float):
            text = str(value)
            return cls(text, text, float(value), value if isinstance(value, int) else None, None, None, False)
        number = float(value) if _NUMBER_RE.fullmatch(value) else None
        integer = int(value) if value.isascii() and value.isdigit() else None
        lowered = value.lower()
        boolean = True if lowered == "true" else False if lowered == "false" else None
        return cls(value, value.casefold(), number, integer, _instant(value), boolean, value == " ")


def _unquote(token: str) -> str:
    """The value of a STRING token: a backslash makes the next character literal."""
    body = token[1:-1]
    return re.sub(r"\\(.)", r"\1", body, flags=re.DOTALL) if "\\" in body else body


def _like_regex(token: str) -> str:
    """The regex a LIKE pattern stands for. Only % is a wildcard (per the docs); `_` is literal.

    A backslash-escaped \\% is a literal percent sign (UNVERIFIED: the docs only say backslash escapes
    special characters).
    """
    body = token[1:-1]
    parts: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            parts.append(re.escape(body[i + 1]))
            i += 2
            continue
        parts.append(".*" if ch == "%" else re.escape(ch))
        i += 1
    return "".join(parts)


def _compare(value: Any, operand: _Operand, numeric_ids: bool) -> int | None:
    """-1, 0 or 1 comparing a record value with a query value, or None when they cannot be compared."""
    if isinstance(value, str):
        if numeric_ids and operand.integer is not None and value.isascii() and value.isdigit():
            # Ids and reference values are numeric strings; "10" > "9" must hold.
            left_int = int(value)
            return (left_int > operand.integer) - (left_int < operand.integer)
        if operand.instant is not None:
            left_time = _instant(value)
            if left_time is not None:
                return (left_time > operand.instant) - (left_time < operand.instant)
        left = value.casefold()
        return (left > operand.folded) - (left < operand.folded)
    if isinstance(value, bool):  # before int: bool is an int subclass
        if operand.boolean is None:
            return None
        return (value > operand.boolean) - (value < operand.boolean)
    if isinstance(value, int | float):
        if operand.number is None:
            return None
        return (value > operand.number) - (value < operand.number)
    return None


# A reference or e-mail object stands for one of its members in a comparison: CustomerRef = '1' means
# CustomerRef.value, PrimaryEmailAddr = 'a@b.com' means PrimaryEmailAddr.Address.
_STAND_IN_MEMBERS: Final = ("value", "Address", "FreeFormNumber", "URI")


def _lookup_any_case(container: dict[str, Any], lowered: str, size: int) -> Any:
    """The value under a key equal to `lowered` ignoring case, or _MISSING (the slow path: exact first)."""
    for key in container:
        if len(key) == size and key.lower() == lowered:
            return container[key]
    return _MISSING


def _stand_in(value: Any) -> Any:
    if value.__class__ is dict:
        for member in _STAND_IN_MEMBERS:
            if member in value:
                return value[member]
    return value


def _make_getter(path: tuple[str, ...]) -> Callable[[dict[str, Any]], Any]:
    """A function reading `path` from a record, or _MISSING. Exact key first, then any-case key.

    The one-segment case is spelled out because it is by far the most common and select() calls this
    for every record.
    """
    steps = [(name, name.lower(), len(name)) for name in path]
    if len(steps) == 1:
        name, lowered, size = steps[0]

        def get_one(record: dict[str, Any]) -> Any:
            value = record.get(name, _MISSING)
            if value is _MISSING:
                value = _lookup_any_case(record, lowered, size)
                if value is _MISSING:
                    return _MISSING
            return _stand_in(value)

        return get_one

    def walk(current: Any, index: int) -> Any:
        for position in range(index, len(steps)):
            if current.__class__ is list:
                # A list on the way (AttachableRef.EntityRef.value): every element is a candidate value.
                found = [walk(item, position) for item in current]
                values = tuple(v for item in found for v in (item.values if item.__class__ is _Many else (item,))
                               if v is not _MISSING)
                return _Many(values) if values else _MISSING
            if current.__class__ is not dict:
                return _MISSING
            name, lowered, size = steps[position]
            value = current.get(name, _MISSING)
            if value is _MISSING:
                value = _lookup_any_case(current, lowered, size)
                if value is _MISSING:
                    return _MISSING
            current = value
        return _stand_in(current)

    def get(record: dict[str, Any]) -> Any:
        return walk(record, 0)

    return get


@dataclass(frozen=True)
class _Many:
    """Values reached through a list: a condition holds when it holds for any of them."""

    values: tuple[Any, ...]


def _is_numeric_id(path: tuple[str, ...]) -> bool:
    last = path[-1].lower()
    return last in ("id", "value") or path[0].lower().endswith("ref")


def _text_key(text: str, is_integer: bool, instant: float | None, numeric_ids: bool) -> tuple[str, Any]:
    """What a string equals under _compare: an integer (Ids), an instant, or its case-folded self."""
    if numeric_ids and is_integer:
        return ("i", int(text))
    if instant is not None:
        return ("t", instant)
    return ("s", text.casefold())


_ORDER_TESTS: Final[dict[str, Callable[[int], bool]]] = {
    "=": lambda c: c == 0,
    "!=": lambda c: c != 0,
    "<": lambda c: c < 0,
    ">": lambda c: c > 0,
    "<=": lambda c: c <= 0,
    ">=": lambda c: c >= 0,
}


_NUMBER_TESTS: Final[dict[str, Callable[[float, float], bool]]] = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt, ">": operator.gt, "<=": operator.le, ">=": operator.ge,
}


def _compile_condition(cond: Condition) -> Predicate:
    """One condition as a closure over its pre-parsed operands (done once per query, not per record)."""
    get = _make_getter(cond.path)
    numeric_ids = _is_numeric_id(cond.path)
    negated = cond.negated
    operands = tuple(_Operand.of(v) for v in cond.values)
    # A lone-space value stands for null, so = ' ' matches records without the property.
    null_listed = cond.op in ("=", "IN") and any(o.is_null for o in operands)
    missing_result: bool | None = True if null_listed else None

    test: Callable[[Any], bool | None]
    if cond.op == "LIKE":
        source = cond.like_pattern
        if source is None:  # a hand-built Condition: its value is already unescaped, so % is a wildcard
            source = ".*".join(re.escape(part) for part in str(cond.values[0]).split("%"))
        pattern = re.compile(source, re.IGNORECASE | re.DOTALL)

        def test(value: Any) -> bool | None:
            return pattern.fullmatch(value) is not None if isinstance(value, str) else None

    elif cond.op == "IN":
        # Membership by hashing instead of comparing with each listed value: Id IN (...) is common and
        # runs over every record. The keys mirror _compare's equality for each kind of record value.
        text_keys = {_text_key(o.text, o.integer is not None, o.instant, numeric_ids) for o in operands}
        number_keys = {o.number for o in operands if o.number is not None}
        bool_keys = {o.boolean for o in operands if o.boolean is not None}

        def test(value: Any) -> bool | None:
            kind = value.__class__
            if kind is str:
                is_integer = value.isascii() and value.isdigit()
                return _text_key(value, is_integer, _instant(value), numeric_ids) in text_keys
            if kind is bool:
                return value in bool_keys if bool_keys else None
            if kind is int or kind is float:
                return value in number_keys if number_keys else None
            return None

    else:
        operand = operands[0]
        accept = _ORDER_TESTS[cond.op]
        number = operand.number
        direct = _NUMBER_TESTS[cond.op]

        def test(value: Any) -> bool | None:
            # Amounts are the common case (TotalAmt > '100'): compare floats and ints straight away.
            kind = value.__class__
            if (kind is float or kind is int) and number is not None:
                return direct(value, number)
            outcome = _compare(value, operand, numeric_ids)
            return None if outcome is None else accept(outcome)

    def predicate(record: dict[str, Any]) -> bool:
        value = get(record)
        if value is _MISSING:
            result = missing_result
        elif value.__class__ is _Many:
            outcomes = [test(v) for v in value.values]
            result = True if True in outcomes else (False if False in outcomes else None)
        else:
            result = test(value)
        # SQL-style three-valued logic: a missing or incomparable value satisfies neither a condition
        # nor its negation.
        if result is None:
            return False
        return result is not negated

    return predicate


def _compile_conditions(conditions: tuple[Condition, ...]) -> Predicate | None:
    predicates = [_compile_condition(c) for c in conditions]
    if not predicates:
        return None
    if len(predicates) == 1:
        return predicates[0]

    def all_hold(record: dict[str, Any]) -> bool:
        for predicate in predicates:
            if not predicate(record):
                return False
        return True

    return all_hold


# ---------------------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------------------


def _normalize_path(name: str) -> tuple[str, ...]:
    path = tuple(name.split("."))
    if path[0].lower() == "metadata":
        # Both spellings are used in the wild (Intuit's docs write Metadata.); the JSON says MetaData.
        path = ("MetaData", *path[1:])
    return path


def _scalar(token: Token) -> Scalar:
    if token.type == "STRING":
        return _unquote(token.value)
    if token.type == "NUMBER":
        return float(token.value) if "." in token.value else int(token.value)
    return token.type == "TRUE"


def _value_token(node: Tree) -> Token:
    token = node.children[0]
    assert isinstance(token, Token)
    return token


def _condition(node: Tree) -> tuple[Condition, str]:
    """A Condition from a compare/in_list node, and the property name as written."""
    tokens = [c for c in node.children if isinstance(c, Token)]
    negated = tokens[0].type == "NOT"
    name = tokens[1].value if negated else tokens[0].value
    path = _normalize_path(name)
    values = [_value_token(c) for c in node.children if isinstance(c, Tree) and c.data == "value"]
    if node.data == "in_list":
        return Condition(name, path, "IN", tuple(_scalar(v) for v in values), negated), name
    comparison = next(c for c in node.children if isinstance(c, Tree) and c.data == "comparison")
    op_token = comparison.children[0]
    assert isinstance(op_token, Token)
    op = "LIKE" if op_token.type == "LIKE" else op_token.value
    value = values[0]
    like = None
    if op == "LIKE":
        like = _like_regex(value.value) if value.type == "STRING" else re.escape(str(value.value))
    return Condition(name, path, op, (_scalar(value),), negated, like), name


def _bounded(token: Token) -> int:
    """A STARTPOSITION or MAXRESULTS number, which must be a whole number."""
    if "." in token.value:
        raise _unexpected(token)
    return int(token.value)


def _check_range(value: int, upper: int | None) -> None:
    if value < 1:
        raise _validation_error(f"value {value} is too small. Min allowed value is 1")
    if upper is not None and value > upper:
        raise _validation_error(f"value {value} is too large. Max allowed value is {upper}")


@functools.lru_cache(maxsize=2048)
def _parse_cached(
    text: str,
    known_entities: frozenset[str],
    queryable: Callable[[str, str], bool] | None,
    known_property: Callable[[str, str], bool] | None,
) -> Query:
    if not text.strip():
        raise _parse_error("The query provided was empty")
    try:
        tree = _PARSER.parse(text)
    except UnexpectedInput as exc:
        raise _syntax_fault(text, exc) from None

    entity_token = next(c for c in tree.children if isinstance(c, Token) and c.type == "IDENTIFIER")
    canonical = {name.lower(): name for name in known_entities}
    entity = canonical.get(entity_token.value.lower())
    if entity is None:
        raise _validation_error(f"invalid context declaration: {entity_token.value}")

    count = False
    conditions: list[Condition] = []
    written_names: list[str] = []
    order_by: list[tuple[tuple[str, ...], bool]] = []
    order_names: list[str] = []
    start_position, max_results = 1, DEFAULT_MAX_RESULTS
    for child in tree.children:
        if not isinstance(child, Tree):
            continue
        if child.data == "select_count":
            count = True
        elif child.data in ("select_all", "select_fields"):
            # Named columns are accepted (python-quickbooks sends `SELECT *, Sku FROM Item`, which Intuit
            # answers); they are checked as properties, and whole records are answered.
            written_names.extend(t.value for t in child.children if isinstance(t, Token) and t.type == "IDENTIFIER")
        elif child.data == "where_clause":
            for part in child.children:
                if isinstance(part, Token) and part.type == "OR":
                    # UNVERIFIED wording: QBO refuses OR, but we found no copy of its exact message.
                    raise _validation_error("OR operator is not supported")
                if isinstance(part, Tree):
                    cond, name = _condition(part)
                    conditions.append(cond)
                    written_names.append(name)
        elif child.data == "order_clause":
            for item in child.find_data("order_item"):
                tokens = [t for t in item.children if isinstance(t, Token)]
                descending = len(tokens) > 1 and tokens[1].type == "DESC"
                order_by.append((_normalize_path(tokens[0].value), descending))
                order_names.append(tokens[0].value)
        elif child.data == "paging":
            for part in child.children:
                assert isinstance(part, Tree)
                number = part.children[1]
                assert isinstance(number, Token)
                if part.data == "start_position":
                    start_position = _bounded(number)
                else:
                    max_results = _bounded(number)

    if known_property is not None:
        for name in (*written_names, *order_names):
            top = _normalize_path(name)[0]
            if not known_property(entity, top):
                raise _validation_error(f"Property {top} not found for Entity {entity}")
    if queryable is not None:
        for name in written_names:
            top = _normalize_path(name)[0]
            if not queryable(entity, top):
                raise _validation_error(f"property '{top}' is not queryable")
    _check_range(start_position, None)
    _check_range(max_results, MAX_MAX_RESULTS)

    frozen = tuple(conditions)
    return Query(entity, count, frozen, tuple(order_by), start_position, max_results,
                 _compile_conditions(frozen))


def parse_query(
    text: str,
    known_entities: Collection[str],
    queryable: Callable[[str, str], bool] | None = None,
    known_property: Callable[[str, str], bool] | None = None,
) -> Query:
    """Parse and validate a QBO SELECT statement; raise QueryError with QBO's fault where QBO would.

    `known_entities` are the canonical entity names (matched case-insensitively). `queryable(entity,
    property)` may refuse filtering on a top-level property ("is not queryable"), and
    `known_property(entity, property)` may refuse a property that does not exist ("not found for
    Entity"). Results are cached per statement, since clients repeat the same few queries.
    """
    entities = known_entities if isinstance(known_entities, frozenset) else frozenset(known_entities)
    return _parse_cached(text, entities, queryable, known_property)


# ---------------------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------------------

# Default order per entity when there is no ORDERBY (ties, and every other entity, by Id ascending).
# Customer, Vendor and Employee are what real sandbox recordings show; Account, Item, Class and Department
# are assumed to behave like Customer because they too are hierarchical name lists (UNVERIFIED).
DEFAULT_ORDER: Final[dict[str, tuple[str, ...]]] = {
    "Customer": ("FullyQualifiedName",),
    "Vendor": ("DisplayName",),
    "Employee": ("DisplayName",),
    "Account": ("FullyQualifiedName",),
    "Item": ("FullyQualifiedName",),
    "Class": ("FullyQualifiedName",),
    "Department": ("FullyQualifiedName",),
}

SortKey = tuple[int, Any]


def _sort_key(path: tuple[str, ...]) -> Callable[[dict[str, Any]], SortKey]:
    """Key putting missing values first, then booleans, numbers, instants and strings in their own order.

    Strings compare by code point, not ignoring case: recordings show "PG&E" listed before "Pam Seitz".
    """
    get = _make_getter(path)
    numeric_ids = _is_numeric_id(path)

    def key(record: dict[str, Any]) -> SortKey:
        value = get(record)
        kind = value.__class__
        if kind is str:
            if numeric_ids and value.isascii() and value.isdigit():
                return (2, int(value))
            moment = _instant(value)
            return (4, value) if moment is None else (3, moment)
        if kind is bool:
            return (1, int(value))
        if kind is int or kind is float:
            return (2, value)
        return (0, 0)  # missing, or an object or list that has no order

    return key


def _id_key(record: dict[str, Any]) -> tuple[int, str]:
    """Server-assigned Ids are digit strings: ordering by (length, text) is numeric order, and cheap."""
    record_id = record.get("Id", "")
    return len(record_id), record_id


_ID_KEY: Final = _id_key


def _order(records: list[dict[str, Any]], query: Query) -> None:
    """Sort in place: by ORDERBY, else the entity's default order; Id ascending breaks ties."""
    if not query.order_by:
        default = DEFAULT_ORDER.get(query.entity)
        if default is None:
            records.sort(key=_ID_KEY)
        else:
            name_key = _sort_key(default)
            records.sort(key=lambda r: (name_key(r), _ID_KEY(r)))
        return
    # Python's sort is stable, so sorting by the least significant key first composes keys that run in
    # different directions.
    records.sort(key=_ID_KEY)
    for path, descending in reversed(query.order_by):
        records.sort(key=_sort_key(path), reverse=descending)


def matches(query: Query, record: dict[str, Any]) -> bool:
    """Whether `record` satisfies every WHERE condition of `query`."""
    return query._predicate is None or query._predicate(record)


def select(query: Query, records: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Filter, order and page `records`; return (the page, how many matched in all).

    STARTPOSITION is 1-based; a start past the last match gives an empty page. For COUNT(*) nothing is
    ordered and the page is empty: only the total matters.
    """
    predicate = query._predicate
    matched = [r for r in records if predicate(r)] if predicate is not None else list(records)
    total = len(matched)
    start = query.start_position - 1
    if query.count or start >= total:
        return [], total
    _order(matched, query)
    return matched[start:start + query.max_results], total
