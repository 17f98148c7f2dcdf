"""A function's tags: templates (or a callable) rendered to tag keys per call, the implicit
function tag last."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from cachedeco.core.keys.templates import Binder, Template, escape_text, items
from cachedeco.core.keyspace import KeySpace
from cachedeco.errors import ConfigurationError

__all__ = ["TagSet", "TagsArg"]

TagsArg = Iterable[str] | Callable[..., Iterable[str]]


class TagSet:
    """Tag templates (or a callable) of one function, rendered to tag keys per call."""

    def __init__(self, func: Callable[..., Any], tags: TagsArg, binder: Binder) -> None:
        self.binder = binder
        self.name = f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', '?')}"
        self.func_tags: Callable[..., Iterable[str]] | None = None
        self.templates: tuple[Template, ...] = ()
        if callable(tags):
            self.func_tags = tags
        else:
            # In shape order: an entry records its tags' tokens in order, and functions that
            # share entries must read the same tags whatever order each lists them in.
            self.templates = tuple(sorted((Template(t, func, what="tag")
                                           for t in items(tags, "tags")),
                                          key=lambda t: t.shape))

    @property
    def empty(self) -> bool:
        """True when the function has no tags of its own."""
        return self.func_tags is None and not self.templates

    def render(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, ...]:
        """The tags of one call."""
        if self.func_tags is not None:
            returned = self.func_tags(*args, **kwargs)
            # (a bare str is iterable: its characters would silently become the tags)
            if isinstance(returned, str | bytes) or not isinstance(returned, Iterable):
                raise ConfigurationError(
                    f"the tags callable of {self.name} returned a {type(returned).__name__}, not "
                    "a list of strings (tags=lambda user_id: [f'user:{user_id}'])",
                    function=self.name)
            tags = tuple(returned)
            for tag in tags:
                if not isinstance(tag, str) or not tag:
                    what = "an empty tag" if tag == "" else f"a tag of type {type(tag).__name__}"
                    raise ConfigurationError(
                        f"the tags callable of {self.name} returned {what}: tags are non-empty "
                        "strings", function=self.name)
            return tags
        values = self.binder.arguments(args, kwargs)
        return tuple(t.render(values) for t in self.templates)

    @property
    def fixed(self) -> bool:
        """True when every call has the same tags (no placeholders, no callable)."""
        return self.func_tags is None and not any(t.fields for t in self.templates)

    def keys_fn(self, keys: KeySpace, fn_tag: str
                ) -> Callable[[tuple[Any, ...], dict[str, Any]], tuple[str, ...]]:
        """A function from one call's arguments to its tag keys (the implicit one last)."""
        if self.empty:
            constant = (fn_tag,)
            return lambda args, kwargs: constant
        head = keys.tag("")
        if self.func_tags is not None:

            def called(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, ...]:
                return (*[head + escape_text(tag) for tag in self.render(args, kwargs)], fn_tag)

            return called
        if self.fixed:  # no placeholders: the same every call
            fixed = (*[head + t.render({}) for t in self.templates], fn_tag)
            return lambda args, kwargs: fixed
        arguments, templates = self.binder.arguments, self.templates

        def rendered(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, ...]:
            values = arguments(args, kwargs)
            return (*[head + t.render(values) for t in templates], fn_tag)

        return rendered
