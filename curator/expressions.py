"""Row conditions written in pipeline files, evaluated on Arrow tables.

A condition is a small Python-like boolean expression over columns::

    quality_label in ['low', 'medium_low', 'medium']
    lang == 'en' and lang_score >= 0.5
    not (exact_dup_count > 1) or source == 'wiki'

Allowed: column names, string/number/bool/None literals and lists of them, comparisons
(``== != < <= > >= in`` and ``not in``), ``and``, ``or``, ``not``, parentheses. Nothing else is
evaluated (no calls, no attributes), so a pipeline file cannot run code through a condition.
A row where the condition cannot be decided (a null value) counts as not matching.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

_COMPARE = {
    ast.Eq: pc.equal, ast.NotEq: pc.not_equal, ast.Lt: pc.less, ast.LtE: pc.less_equal,
    ast.Gt: pc.greater, ast.GtE: pc.greater_equal,
}


class ConditionError(ValueError):
    """A condition that cannot be parsed or uses something not allowed."""


@dataclass(frozen=True)
class RowCondition:
    """A parsed condition: the columns it reads, and a mask over a table's rows."""

    text: str
    tree: ast.Expression
    columns: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> RowCondition:
        """Parse and check a condition; :class:`ConditionError` says what is wrong."""
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as exc:
            raise ConditionError(f"cannot parse condition {text!r}: {exc.msg}") from None
        columns: list[str] = []
        _check(tree.body, columns)
        return cls(text, tree, tuple(dict.fromkeys(columns)))

    def mask(self, table: pa.Table) -> pa.Array:
        """A boolean array: True where the row matches (nulls count as False)."""
        missing = [c for c in self.columns if c not in table.column_names]
        if missing:
            raise KeyError(f"condition {self.text!r} reads missing column(s) {missing}")
        value = _eval(self.tree.body, table)
        if not isinstance(value, (pa.Array, pa.ChunkedArray)):
            value = pa.array([bool(value)] * table.num_rows, pa.bool_())
        if isinstance(value, pa.ChunkedArray):
            value = value.combine_chunks()
        return pc.fill_null(value, False)


def _check(node: ast.AST, columns: list[str]) -> None:
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value, columns)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        _check(node.operand, columns)
    elif isinstance(node, ast.Compare):
        for op in node.ops:
            if type(op) not in _COMPARE and not isinstance(op, (ast.In, ast.NotIn)):
                raise ConditionError(f"operator {type(op).__name__} is not allowed in a condition")
        for operand in [node.left, *node.comparators]:
            _check(operand, columns)
    elif isinstance(node, ast.Name):
        columns.append(node.id)
    elif isinstance(node, ast.Constant):
        if not isinstance(node.value, (str, int, float, bool, type(None))):
            raise ConditionError(f"literal {node.value!r} is not allowed in a condition")
    elif isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        for elt in node.elts:
            if not isinstance(elt, ast.Constant):
                raise ConditionError("lists in a condition hold literals only")
            _check(elt, columns)
    else:
        raise ConditionError(f"{ast.unparse(node)!r} is not allowed in a condition "
                             "(columns, literals, comparisons, in, and, or, not)")


def _eval(node: ast.AST, table: pa.Table) -> Any:
    if isinstance(node, ast.BoolOp):
        values = [_eval(v, table) for v in node.values]
        combine = pc.and_kleene if isinstance(node.op, ast.And) else pc.or_kleene
        out = values[0]
        for value in values[1:]:
            out = combine(out, value)
        return out
    if isinstance(node, ast.UnaryOp):
        return pc.invert(_eval(node.operand, table))
    if isinstance(node, ast.Compare):
        out = None
        left = _eval(node.left, table)
        for op, comparator in zip(node.ops, node.comparators):
            right = _eval(comparator, table)
            if isinstance(op, (ast.In, ast.NotIn)):
                result = pc.is_in(left, value_set=pa.array(right))
                result = pc.invert(result) if isinstance(op, ast.NotIn) else result
                if isinstance(left, (pa.Array, pa.ChunkedArray)):  # a null value is undecided
                    result = pc.if_else(pc.is_null(left), pa.scalar(None, pa.bool_()), result)
            else:
                result = _COMPARE[type(op)](left, right)
            out = result if out is None else pc.and_kleene(out, result)
            left = right
        return out
    if isinstance(node, ast.Name):
        return table.column(node.id)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return [elt.value for elt in node.elts]  # type: ignore[attr-defined]
    raise ConditionError(f"cannot evaluate {ast.unparse(node)!r}")
