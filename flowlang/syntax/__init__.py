"""Text to AST: the cached Lark parser, the tree builder, and syntax-error recovery."""
from flowlang.syntax.parser import ParseResult, parse, parse_text

__all__ = ["ParseResult", "parse", "parse_text"]
