"""Statements as Athena receives them, checked with Trino's own ANTLR grammar (`trino-query-parser`), not sqlglot.

`inspect_statement` parses one statement and reports the functions it calls and every `?` parameter that is not
inside a WHERE clause (Athena binds execution parameters in WHERE clauses only).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from antlr4 import CommonTokenStream, InputStream, ParserRuleContext
from antlr4.error.ErrorListener import ConsoleErrorListener
from antlr4.tree.Tree import TerminalNode
from trino_query_parser.error import TrinoErrorListener
from trino_query_parser.SqlBaseLexer import SqlBaseLexer
from trino_query_parser.SqlBaseParser import SqlBaseParser


@dataclass
class Statement:
    functions: set[str] = field(default_factory=set)
    parameters: int = 0
    parameters_outside_where: list[str] = field(default_factory=list)


def parse(sql: str) -> ParserRuleContext:
    """The parse tree of one statement; raises on a syntax error (the grammar's keywords are upper case)."""
    lexer = SqlBaseLexer(InputStream(_upper_outside_literals(sql)))
    parser = SqlBaseParser(CommonTokenStream(lexer))
    parser.removeErrorListener(ConsoleErrorListener.INSTANCE)
    parser.addErrorListener(TrinoErrorListener())
    return parser.singleStatement()


def _upper_outside_literals(sql: str) -> str:
    """Upper-case the text but not its string literals, so literal values reach the tree unchanged."""
    parts = sql.split("'")
    return "'".join(part.upper() if index % 2 == 0 else part for index, part in enumerate(parts))


def inspect_statement(sql: str) -> Statement:
    found = Statement()
    stack: list[object] = [parse(sql)]
    while stack:
        node = stack.pop()
        if isinstance(node, TerminalNode):
            if node.getSymbol().type == SqlBaseLexer.QUESTION_MARK:
                found.parameters += 1
                if not _in_where(node):
                    found.parameters_outside_where.append(_context_text(node))
            continue
        if isinstance(node, SqlBaseParser.FunctionCallContext):
            found.functions.add(node.qualifiedName().getText().lower())
        stack.extend(node.getChildren())
    return found


def _in_where(node: TerminalNode) -> bool:
    """True when the nearest query specification above the parameter holds it in its WHERE clause."""
    child, parent = node, node.parentCtx
    while parent is not None:
        if isinstance(parent, SqlBaseParser.QuerySpecificationContext):
            return child is parent.where
        child, parent = parent, parent.parentCtx
    return False


def _context_text(node: TerminalNode) -> str:
    parent = node.parentCtx
    for _ in range(3):
        if parent.parentCtx is not None:
            parent = parent.parentCtx
    return parent.getText()[:80]
