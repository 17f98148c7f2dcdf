"""Invalidation of tags from a model's ``post_save`` and ``post_delete`` signals."""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable
from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save

from cachedeco.api.registry import Registry
from cachedeco.api.registry import registry as default_registry
from cachedeco.core.keys.templates import unrendered
from cachedeco.errors import ConfigurationError, SerializationError

__all__ = ["invalidate_on_save"]

#: Tags of an instance: templates over its attributes, or a function of the instance.
Tags = Iterable[str] | Callable[[Any], Iterable[str]]


class _Attributes(dict[str, Any]):
    """The instance's attributes by name, for ``str.format_map`` (``"product:{pk}"``)."""

    def __init__(self, instance: Any) -> None:
        super().__init__()
        self.instance = instance

    def __missing__(self, name: str) -> Any:
        return getattr(self.instance, name)


#: An instance's tags, and the error of a template it could not give (raised after the others
#: are invalidated: outside a transaction the row is already committed).
Rendered = tuple[list[str], SerializationError | None]


def _renderer(model: type[Any], tags: Tags) -> Callable[[Any], Rendered]:
    """A function of an instance returning its tags; templates are checked against `model`."""
    if callable(tags):
        return lambda instance: (list(tags(instance)), None)
    templates = [tags] if isinstance(tags, str) else list(tags)
    if not all(isinstance(t, str) for t in templates):
        raise ConfigurationError(f"tags must be strings or a function, not {tags!r}")
    for template in templates:
        for _, field, _, _ in string.Formatter().parse(template):
            name = re.split(r"[.\[]", field or "", maxsplit=1)[0]
            if field is not None and not hasattr(model, name):
                raise ConfigurationError(f"tag template {template!r}: {model.__name__} has no "
                                         f"attribute {name!r}")

    def render(instance: Any) -> Rendered:
        done, failed = [], None
        for template in templates:
            try:
                done.append(_render(template, instance))
            except SerializationError as exc:
                failed = failed or exc
        return done, failed

    return render


def _render(template: str, instance: Any) -> str:
    """One tag of ``instance``; an attribute it cannot give (``{brand.slug}`` of a product
    without a brand) is a SerializationError naming the template and the model, raised
    from the ``save()`` (in an ``atomic`` block: before the commit, so it rolls back;
    outside one, after the commit and the invalidation of the tags that rendered)."""
    try:
        return template.format_map(_Attributes(instance))
    except Exception as exc:
        raise unrendered(f"tag template {template!r}", f"a {type(instance).__name__}",
                         exc) from exc


def invalidate_on_save(model: type[Any], tags: Tags, *, delete: bool = True,
                       registry: Registry | None = None, backend: str = "default") -> None:
    """Invalidate an instance's tags whenever one is saved (or deleted), after the commit.

    The tags are rendered from the instance when the signal fires (so a deleted instance
    still has its `pk`), and invalidated once the transaction commits
    (`transaction.on_commit`; at once outside a transaction), so a reader that loads before
    the commit cannot cache the old row again. Signals do not fire for `QuerySet.update()`,
    `bulk_create()` or `bulk_update()`: invalidate after those yourself.

    ```python
    invalidate_on_save(Product, ["product:{pk}", "brand:{brand_id}", "products"])
    invalidate_on_save(Order, lambda order: [f"customer:{order.customer_id}:orders"])
    ```

    Call it once per model, e.g. in your `AppConfig.ready()`; calling it again for the same
    model replaces the earlier receivers.

    Args:
        model: The model class whose `post_save` (and `post_delete`) is watched.
        tags: Tag templates formatted with the instance's attributes (`"product:{pk}"`), or a
            function of the instance returning the tags.
        delete: Also invalidate on `post_delete`.
        registry: The registry whose tags are invalidated; `None`: the default registry.
        backend: The name of that registry's backend.

    Raises:
        ConfigurationError: `tags` is neither strings nor a function, or a template names
            an attribute the model lacks.
    """
    render = _renderer(model, tags)
    chosen = default_registry if registry is None else registry

    def receiver(sender: type[Any], instance: Any, using: str = "default",
                 **kwargs: Any) -> None:
        rendered, failed = render(instance)
        if rendered:
            transaction.on_commit(
                lambda: chosen.invalidate_tags(*rendered, backend=backend), using=using)
        if failed is not None:
            raise failed

    uid = f"cachedeco.invalidate_on_save:{model._meta.label}"
    # Django keeps the first receiver of a dispatch_uid and ignores a later one: replaced here
    for signal in (post_save, post_delete):
        signal.disconnect(sender=model, dispatch_uid=uid)
    post_save.connect(receiver, sender=model, weak=False, dispatch_uid=uid)
    if delete:
        post_delete.connect(receiver, sender=model, weak=False, dispatch_uid=uid)
