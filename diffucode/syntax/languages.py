"""Language registry: file extensions, grammar wheels and per-language node-kind tables.

Each grammar ships as its own PyPI wheel (tree-sitter-python, tree-sitter-javascript, ...). We import
them lazily and never through tree-sitter-language-pack / tree-sitter-languages: the former downloads
grammars at run time (fails offline), the latter is unmaintained and breaks with tree-sitter >= 0.22.

The tables name node kinds as the grammars spell them. They are hand-written rather than derived from
`Language.supertypes` because only the ABI-15 grammars expose supertypes (Java, C++ and TypeScript
wheels are ABI 14), and because we want statement-level decisions to be explicit and reviewable.
"""

from __future__ import annotations

import functools
import importlib
import os
import threading
from dataclasses import dataclass

import tree_sitter as ts

__all__ = ["LanguageSpec", "SPECS", "language_for_path", "available_languages", "spec_for", "get_parser", "kind_ids"]


def _kinds(text: str) -> frozenset[str]:
    return frozenset(text.split())


@dataclass(frozen=True)
class LanguageSpec:
    """What the syntax layer needs to know about one grammar.

    blocks:      containers whose named children are statement-level items (module, block, {...}).
    compounds:   statement items that own a body (if/for/def/class...): never "simple statements".
    definitions: function-like nodes; the block directly under them is a "function_body".
    wrappers:    nodes that wrap a definition and must travel with it (decorators, export, template).
    expressions: expression kinds: mask candidates and snap targets below statement level.
    atoms:       single-token expressions, kept as candidates only where they stand alone.
    brackets:    expression kinds that open with "(", "[" or "{" (a cursor inside one wants an expression).
    headers:     anonymous tokens that end a compound header line (":" in Python, "{" elsewhere).
    expr_keywords: keywords after which an expression is expected (`return `, `await `).
    line_comment: the line-comment prefix, for textual look-arounds confirmed against the tree.
    """

    name: str
    module: str
    entry: str
    extensions: tuple[str, ...]
    blocks: frozenset[str]
    compounds: frozenset[str]
    definitions: frozenset[str]
    wrappers: frozenset[str]
    expressions: frozenset[str]
    atoms: frozenset[str]
    brackets: frozenset[str]
    comments: frozenset[str] = frozenset({"comment", "line_comment", "block_comment"})
    attached_above: frozenset[str] = frozenset()  # non-comment items pulled in like comments (Rust #[attr])
    headers: frozenset[str] = frozenset({"{"})
    expr_keywords: frozenset[str] = frozenset({"return", "throw", "yield", "await", "case", "new", "typeof"})
    line_comment: str = "//"


_C_EXPR = _kinds(
    """assignment_expression binary_expression call_expression cast_expression char_literal
    comma_expression compound_literal_expression concatenated_string conditional_expression
    field_expression identifier number_literal parenthesized_expression pointer_expression
    sizeof_expression string_literal subscript_expression unary_expression update_expression
    initializer_list true false null alignof_expression offsetof_expression generic_expression"""
)
_C_ATOMS = _kinds("identifier number_literal char_literal string_literal true false null field_identifier")
_C_COMPOUNDS = _kinds(
    """if_statement for_statement while_statement do_statement switch_statement case_statement
    compound_statement function_definition struct_specifier enum_specifier union_specifier
    preproc_if preproc_ifdef seh_try_statement labeled_statement"""
)

_JS_EXPR = _kinds(
    """arrow_function assignment_expression augmented_assignment_expression await_expression
    binary_expression call_expression member_expression subscript_expression new_expression
    object array string template_string number identifier true false null undefined this
    parenthesized_expression ternary_expression unary_expression update_expression
    function_expression class regex sequence_expression yield_expression spread_element
    as_expression satisfies_expression non_null_expression"""
)
_JS_ATOMS = _kinds("identifier number string true false null undefined this property_identifier regex")
_JS_COMPOUNDS = _kinds(
    """if_statement for_statement for_in_statement while_statement do_statement try_statement
    switch_statement with_statement labeled_statement function_declaration
    generator_function_declaration class_declaration abstract_class_declaration method_definition
    statement_block interface_declaration enum_declaration internal_module module"""
)
_JS_DEFS = _kinds(
    """function_declaration generator_function_declaration function_expression arrow_function
    method_definition generator_function"""
)
_JS_BLOCKS = _kinds("program statement_block class_body switch_case switch_default")

SPECS: dict[str, LanguageSpec] = {
    "python": LanguageSpec(
        name="python",
        module="tree_sitter_python",
        entry="language",
        extensions=(".py", ".pyi", ".pyw"),
        blocks=_kinds("module block"),
        compounds=_kinds(
            """if_statement for_statement while_statement try_statement with_statement match_statement
            function_definition class_definition decorated_definition"""
        ),
        definitions=_kinds("function_definition"),
        wrappers=_kinds("decorated_definition"),
        expressions=_kinds(
            """await binary_operator boolean_operator call attribute subscript comparison_operator
            conditional_expression dictionary dictionary_comprehension list list_comprehension set
            set_comprehension generator_expression tuple parenthesized_expression lambda
            named_expression not_operator unary_operator string concatenated_string integer float
            true false none identifier ellipsis expression_list list_splat dictionary_splat yield"""
        ),
        atoms=_kinds("identifier integer float true false none ellipsis string"),
        brackets=_kinds(
            """argument_list parameters list tuple dictionary set parenthesized_expression subscript
            generator_expression list_comprehension set_comprehension dictionary_comprehension
            lambda_parameters"""
        ),
        comments=_kinds("comment"),
        headers=_kinds(":"),
        expr_keywords=_kinds("return yield await in not and or if elif while assert del else raise from with lambda"),
        line_comment="#",
    ),
    "javascript": LanguageSpec(
        name="javascript",
        module="tree_sitter_javascript",
        entry="language",
        extensions=(".js", ".mjs", ".cjs", ".jsx"),
        blocks=_JS_BLOCKS,
        compounds=_JS_COMPOUNDS,
        definitions=_JS_DEFS,
        wrappers=_kinds("export_statement"),
        expressions=_JS_EXPR,
        atoms=_JS_ATOMS,
        brackets=_kinds("arguments formal_parameters array parenthesized_expression object subscript_expression"),
    ),
    "typescript": LanguageSpec(
        name="typescript",
        module="tree_sitter_typescript",
        entry="language_typescript",
        extensions=(".ts", ".mts", ".cts"),
        blocks=_JS_BLOCKS | _kinds("interface_body enum_body"),
        compounds=_JS_COMPOUNDS,
        definitions=_JS_DEFS,
        wrappers=_kinds("export_statement"),
        expressions=_JS_EXPR,
        atoms=_JS_ATOMS,
        brackets=_kinds("arguments formal_parameters array parenthesized_expression object subscript_expression"),
    ),
    "tsx": LanguageSpec(
        name="tsx",
        module="tree_sitter_typescript",
        entry="language_tsx",
        extensions=(".tsx",),
        blocks=_JS_BLOCKS | _kinds("interface_body enum_body"),
        compounds=_JS_COMPOUNDS,
        definitions=_JS_DEFS,
        wrappers=_kinds("export_statement"),
        expressions=_JS_EXPR | _kinds("jsx_element jsx_self_closing_element"),
        atoms=_JS_ATOMS,
        brackets=_kinds("arguments formal_parameters array parenthesized_expression object subscript_expression"),
    ),
    "go": LanguageSpec(
        name="go",
        module="tree_sitter_go",
        entry="language",
        extensions=(".go",),
        blocks=_kinds("source_file block statement_list expression_case default_case type_case communication_case"),
        compounds=_kinds(
            """if_statement for_statement expression_switch_statement type_switch_statement
            select_statement function_declaration method_declaration block labeled_statement"""
        ),
        definitions=_kinds("function_declaration method_declaration func_literal"),
        wrappers=frozenset(),
        expressions=_kinds(
            """binary_expression call_expression selector_expression index_expression slice_expression
            unary_expression parenthesized_expression composite_literal func_literal identifier
            int_literal float_literal interpreted_string_literal raw_string_literal rune_literal
            true false nil type_assertion_expression type_conversion_expression expression_list"""
        ),
        atoms=_kinds(
            """identifier int_literal float_literal interpreted_string_literal raw_string_literal
            rune_literal true false nil"""
        ),
        brackets=_kinds("argument_list parameter_list parenthesized_expression literal_value index_expression"),
        expr_keywords=_kinds("return go defer case range"),
    ),
    "rust": LanguageSpec(
        name="rust",
        module="tree_sitter_rust",
        entry="language",
        extensions=(".rs",),
        blocks=_kinds("source_file block declaration_list"),
        compounds=_kinds(
            """function_item impl_item trait_item mod_item struct_item enum_item union_item
            if_expression for_expression while_expression loop_expression match_expression
            macro_definition foreign_mod_item"""
        ),
        definitions=_kinds("function_item closure_expression"),
        wrappers=frozenset(),
        expressions=_kinds(
            """binary_expression call_expression field_expression index_expression unary_expression
            reference_expression parenthesized_expression array_expression tuple_expression
            struct_expression closure_expression if_expression match_expression macro_invocation
            identifier integer_literal float_literal string_literal char_literal boolean_literal
            range_expression try_expression await_expression type_cast_expression scoped_identifier
            assignment_expression compound_assignment_expr return_expression"""
        ),
        atoms=_kinds("identifier integer_literal float_literal string_literal char_literal boolean_literal"),
        brackets=_kinds("arguments parameters array_expression tuple_expression parenthesized_expression"),
        attached_above=_kinds("attribute_item"),
        expr_keywords=_kinds("return let match if while in break"),
    ),
    "java": LanguageSpec(
        name="java",
        module="tree_sitter_java",
        entry="language",
        extensions=(".java",),
        blocks=_kinds(
            "program block class_body interface_body enum_body constructor_body switch_block_statement_group"
        ),
        compounds=_kinds(
            """if_statement for_statement enhanced_for_statement while_statement do_statement
            try_statement try_with_resources_statement switch_expression synchronized_statement
            class_declaration interface_declaration enum_declaration record_declaration
            method_declaration constructor_declaration block labeled_statement static_initializer"""
        ),
        definitions=_kinds("method_declaration constructor_declaration lambda_expression"),
        wrappers=frozenset(),
        expressions=_kinds(
            """assignment_expression binary_expression method_invocation field_access array_access
            object_creation_expression array_creation_expression cast_expression ternary_expression
            unary_expression update_expression parenthesized_expression lambda_expression
            instanceof_expression method_reference identifier decimal_integer_literal
            hex_integer_literal decimal_floating_point_literal string_literal character_literal
            true false null_literal this array_initializer switch_expression"""
        ),
        atoms=_kinds(
            """identifier decimal_integer_literal hex_integer_literal decimal_floating_point_literal
            string_literal character_literal true false null_literal this"""
        ),
        brackets=_kinds("argument_list formal_parameters parenthesized_expression array_initializer array_access"),
    ),
    "c": LanguageSpec(
        name="c",
        module="tree_sitter_c",
        entry="language",
        extensions=(".c", ".h"),
        blocks=_kinds("translation_unit compound_statement declaration_list field_declaration_list"),
        compounds=_C_COMPOUNDS,
        definitions=_kinds("function_definition"),
        wrappers=frozenset(),
        expressions=_C_EXPR,
        atoms=_C_ATOMS,
        brackets=_kinds("argument_list parameter_list parenthesized_expression initializer_list subscript_expression"),
        expr_keywords=_kinds("return case sizeof"),
    ),
    "cpp": LanguageSpec(
        name="cpp",
        module="tree_sitter_cpp",
        entry="language",
        extensions=(".cc", ".cpp", ".cxx", ".c++", ".hpp", ".hh", ".hxx", ".h++", ".ipp", ".tpp"),
        blocks=_kinds("translation_unit compound_statement declaration_list field_declaration_list"),
        compounds=_C_COMPOUNDS
        | _kinds("for_range_loop try_statement class_specifier namespace_definition template_declaration"),
        definitions=_kinds("function_definition lambda_expression"),
        wrappers=_kinds("template_declaration"),
        expressions=_C_EXPR | _kinds("lambda_expression new_expression delete_expression this qualified_identifier"),
        atoms=_C_ATOMS | _kinds("this"),
        brackets=_kinds("argument_list parameter_list parenthesized_expression initializer_list subscript_expression"),
        expr_keywords=_kinds("return case sizeof co_return co_yield co_await throw new"),
    ),
}

# Short names and the LSP / VS Code language ids (`typescriptreact` etc.) that front ends pass on.
_ALIASES = {"py": "python", "python3": "python", "js": "javascript", "jsx": "javascript",
            "javascriptreact": "javascript", "ts": "typescript", "typescriptreact": "tsx", "golang": "go",
            "rs": "rust", "c++": "cpp", "cxx": "cpp", "cc": "cpp"}
_BY_EXT = {ext: spec.name for spec in SPECS.values() for ext in spec.extensions}


def language_for_path(path: str) -> str | None:
    """Language name for a file path by its extension (case-insensitive); None when unknown.

    `.h` maps to C: C++ headers parse with the C grammar well enough for snapping, and the reverse
    (C parsed as C++) misreads `class`/`new` used as identifiers.
    """
    return _BY_EXT.get(os.path.splitext(path)[1].lower())


def canonical_name(language: str | None) -> str | None:
    """Normalise a user-facing language name (`"py"`, `"c++"`) to a registry key, or None."""
    if language is None:
        return None
    key = language.strip().lower()
    key = _ALIASES.get(key, key)
    return key if key in SPECS else None


@functools.cache
def _language(name: str) -> ts.Language | None:
    """The tree-sitter Language for a registry key, or None when its wheel is not installed."""
    spec = SPECS[name]
    try:
        module = importlib.import_module(spec.module)
        return ts.Language(getattr(module, spec.entry)())
    except (ImportError, AttributeError, ValueError, TypeError):
        # ValueError/TypeError: a wheel built for an ABI this tree-sitter cannot load.
        return None


def available_languages() -> list[str]:
    """Registry keys whose grammar wheel imports and loads (sorted)."""
    return sorted(name for name in SPECS if _language(name) is not None)


def spec_for(language: str | None) -> tuple[LanguageSpec | None, str]:
    """(spec, note): the spec when the grammar is usable, else None and a one-line reason."""
    if language is None:
        return None, "no language given"
    name = canonical_name(language)
    if name is None:
        return None, f"no grammar for language {language!r}"
    if _language(name) is None:
        return None, f"grammar wheel {SPECS[name].module.replace('_', '-')} is not installed"
    return SPECS[name], ""


@functools.cache
def kind_ids(name: str, kinds: frozenset[str]) -> frozenset[int]:
    """All symbol ids whose kind name is in `kinds` (a name can have several ids through aliases).
    Hot loops compare `node.kind_id` ints: `node.type` builds a new str, hashed on every set look-up."""
    language = _language(name)
    if language is None:
        return frozenset()
    return frozenset(i for i in range(language.node_kind_count) if language.node_kind_for_id(i) in kinds)


_local = threading.local()


def get_parser(name: str) -> ts.Parser:
    """A parser for a registry key, one per thread: tree-sitter parsers are not thread-safe."""
    parsers = getattr(_local, "parsers", None)
    if parsers is None:
        parsers = _local.parsers = {}
    parser = parsers.get(name)
    if parser is None:
        language = _language(name)
        if language is None:  # callers check spec_for first; this is an internal invariant
            raise RuntimeError(f"grammar for {name} is not available")
        parser = parsers[name] = ts.Parser(language)
    return parser
