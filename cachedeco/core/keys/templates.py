"""Binding call arguments to a signature, and str.format-style templates over them.

Both are built once per function when the decorator is applied; key templates, tag
templates and write-through mappings share them. Substituted text is percent-escaped
(``%``, ``{``, ``}`` and non-printables), so a rendered key never holds a Redis Cluster hash
tag and ``invalidate_tags("item:50%")`` names the tag ``"item:{x}"`` rendered for ``"50%"``.
"""

from __future__ import annotations

import inspect
import re
import string
from collections.abc import Callable, Iterable
from typing import Any

from cachedeco.errors import ConfigurationError, SerializationError

__all__ = ["POSITIONAL", "Binder", "Template", "escape_text", "items", "keyed_value",
           "unrendered", "unwrap"]

_TEXT_SPECIAL = re.compile(r"[%{}]")


def escape_text(text: str) -> str:
    """Percent-escape ``%``, braces and non-printables of template or callable key text."""
    if text.isprintable() and _TEXT_SPECIAL.search(text) is None:
        return text
    return "".join(
        c
        if c.isprintable() and c not in "%{}"
        else "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
        for c in text
    )


def items(value: object, what: str) -> tuple[Any, ...]:
    """A list-like argument (``tags=``, ``ignore=``, ``invalidate=``) as a tuple; a bare str
    or a non-iterable is a ConfigurationError rather than a TypeError."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ConfigurationError(f"{what} must be a list of strings, not {value!r}")
    return tuple(value)


def keyed_value(context: str, text: str, *, namer: Callable[[str], str]) -> str:
    """What stands for a substituted value in a sensitive function's key: ``!`` and the keyed
    hash of the value's (escaped) text and the rendered text before it, so one value gives
    different hashes in different places and no value can be read back."""
    return "!" + namer(f"{len(context)}:{context}{escape_text(text)}")


_EMPTY = inspect.Parameter.empty
POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def unwrap(func: Any) -> Any:
    """The plain function behind a ``staticmethod``/``classmethod`` object."""
    return func.__func__ if isinstance(func, staticmethod | classmethod) else func


def _signature(func: Any) -> inspect.Signature:
    """``inspect.signature``, with a ConfigurationError when the callable has none."""
    try:
        return inspect.signature(unwrap(func))
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"cannot read the signature of {func!r}: {exc}") from exc


class Binder:
    """Maps one call's arguments to the signature: name -> value, defaults applied."""

    __slots__ = ("_all_positional", "_plain", "_specs", "parameters", "signature")

    def __init__(self, func: Callable[..., Any]) -> None:
        self.signature = _signature(func)
        params = tuple(self.signature.parameters.values())
        self.parameters: tuple[str, ...] = tuple(p.name for p in params)
        self._plain = all(p.kind not in _VARIADIC for p in params)
        self._all_positional = all(p.kind in POSITIONAL for p in params)
        self._specs = tuple(
            (p.name, p.kind is inspect.Parameter.POSITIONAL_ONLY, p.default) for p in params
        )

    def arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The arguments by name in signature order; a mismatch raises the function's TypeError."""
        if not kwargs and self._all_positional and len(args) == len(self._specs):
            return dict(zip(self.parameters, args, strict=True))
        if not self._plain or len(args) > len(self._specs):
            return self._arguments_slow(args, kwargs)
        values: dict[str, Any] = {}
        used = 0
        for index, (name, positional_only, default) in enumerate(self._specs):
            if index < len(args):
                values[name] = args[index]
            elif not positional_only and name in kwargs:
                values[name] = kwargs[name]
                used += 1
            elif default is not _EMPTY:
                values[name] = default
            else:
                return self._arguments_slow(args, kwargs)
        return values if used == len(kwargs) else self._arguments_slow(args, kwargs)

    def _arguments_slow(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """``Signature.bind`` for variadic signatures, and for the exact TypeError of a bad call."""
        call = self.signature.bind(*args, **kwargs)
        call.apply_defaults()
        return dict(call.arguments)


_FIELD = re.compile(r"([^.\[]*)((?:\.[^.\[]+|\[[^\]]+\])*)")
_FORMATTER = string.Formatter()


def _check_field(field: str, params: frozenset[str], template: str, what: str) -> None:
    """A replacement field must be rooted at a parameter name (``{user.id}``, ``{d[k]}``)."""
    match = _FIELD.fullmatch(field)
    if match is None:
        raise ConfigurationError(f"{what} template {template!r}: malformed field {{{field}}}")
    root = match.group(1)
    if not root or root.isdigit():
        raise ConfigurationError(
            f"{what} template {template!r}: positional field {{{field}}}; name a parameter"
        )
    if root not in params:
        raise ConfigurationError(
            f"{what} template {template!r} uses {root!r}, which is not a parameter "
            f"(parameters: {', '.join(sorted(params)) or 'none'})"
        )


class Template:
    """A str.format-style template over the function's parameters, validated at decoration."""

    __slots__ = ("_parts", "_what", "text")

    @property
    def fields(self) -> bool:
        """Whether the template has any placeholder (else it renders to its own text)."""
        return any(fmt is not None for _, fmt in self._parts)

    @property
    def shape(self) -> str:
        """The template's text with every field as ``%7B%7D`` (no braces, which Redis Cluster
        would read as a hash tag): ``"user:{user_id}"`` and ``"user:{id}"`` have one shape,
        as they render the same keys for the same values."""
        return "".join(lit + ("%7B%7D" if fmt is not None else "") for lit, fmt in self._parts)

    def __init__(
        self,
        template: str,
        func_or_params: Callable[..., Any] | Iterable[str],
        *,
        what: str = "key",
    ) -> None:
        if not isinstance(template, str):
            raise ConfigurationError(f"a {what} template must be a str, not {template!r}")
        if not template:  # every call would share one entry (a key) or one tag key
            raise ConfigurationError(f"a {what} template must not be empty")
        if isinstance(func_or_params, str):
            raise ConfigurationError("pass the function or an iterable of parameter names")
        params = frozenset(
            Binder(func_or_params).parameters if callable(func_or_params) else func_or_params
        )
        self.text, self._what = template, what
        try:
            self._parts = tuple(self._compile(template, params, what))
        except ConfigurationError:
            raise
        except ValueError as exc:
            raise ConfigurationError(f"malformed {what} template {template!r}: {exc}") from exc

    @staticmethod
    def _compile(
        template: str, params: frozenset[str], what: str
    ) -> Iterable[tuple[str, str | None]]:
        """(escaped literal, one-field format string or None) pairs; checks every field name."""
        for literal, field, spec, conversion in _FORMATTER.parse(template):
            text = literal.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")
            if field is None:
                yield text, None
                continue
            _check_field(field, params, template, what)
            if conversion not in (None, "r", "s", "a"):
                raise ValueError(f"unknown conversion !{conversion}")
            for _, nested, _, _ in _FORMATTER.parse(spec or ""):
                if nested is not None:
                    _check_field(nested, params, template, what)
            suffix = (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            yield text, f"{{{field}{suffix}}}"

    def render(self, bound: dict[str, Any]) -> str:
        """The template formatted with the bound arguments, substituted text percent-escaped.

        A plain ``{name}`` field holding an int or a str is substituted without ``format``.
        """
        out = []
        for literal, fmt in self._parts:
            out.append(literal)
            if fmt is not None:
                value = bound.get(fmt[1:-1], _EMPTY)
                kind = value.__class__
                if kind is int:
                    out.append(str(value))
                elif kind is str:
                    out.append(escape_text(value))
                else:
                    out.append(escape_text(self._format(fmt, bound)))
        return "".join(out)

    def render_keyed(self, bound: dict[str, Any], *, namer: Callable[[str], str]) -> str:
        """The template with each substituted value replaced by its :func:`keyed_value`."""
        out = ""
        for literal, fmt in self._parts:
            out += literal
            if fmt is not None:
                out += keyed_value(out, self._format(fmt, bound), namer=namer)
        return out

    def _format(self, fmt: str, bound: dict[str, Any]) -> str:
        """One field formatted; an argument the field cannot be read from (``{user.id}`` of
        an int, a format spec its type lacks) is a SerializationError naming the template,
        with no argument's value in it."""
        try:
            return fmt.format_map(bound)
        except Exception as exc:
            raise unrendered(f"{self._what} template {self.text!r}", "the call's arguments",
                             exc) from exc


def unrendered(template: str, source: str, exc: Exception) -> SerializationError:
    """The error of a ``template`` (``"key template 'u:{x.id}'"``) that ``source`` could not
    fill: the exception's type, and its message only when it names the template's own
    attribute, index or type (AttributeError, LookupError), never an argument's value."""
    said = f": {exc}" if isinstance(exc, AttributeError | LookupError) else ""
    return SerializationError(
        f"cannot render the {template} from {source}: {exc.__class__.__name__}{said}")
