"""Unit tests of the key builder: default keys, templates, callables, hashing, binding."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import hashlib
import inspect
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cachedeco
from cachedeco.core.keys.builder import (
    MAX_KEY_BYTES,
    Binder,
    KeyBuilder,
    Template,
    encode_args,
    hashed,
)
from cachedeco.errors import ConfigurationError, SerializationError

# --- fixtures: functions and types the keys are built for -------------------------------------


def get_user(user_id: int) -> None:
    """One plain parameter."""


def named(name: str, func: Any = None) -> Any:
    """A copy of ``func`` (default: get_user) whose ``module.qualname`` is ``name``."""
    func = func or get_user

    def copy(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    copy.__signature__ = inspect.signature(func)  # type: ignore[attr-defined]
    module, _, qualname = name.rpartition(".")
    copy.__module__, copy.__qualname__ = module, qualname
    return copy


def pair(a: Any, b: Any = 2) -> None:
    """Two parameters, one with a default."""


def triple(a: Any, b: Any, c: Any) -> None:
    """Three plain positional parameters: eligible for the fast path."""


def variadic(a: Any, *args: Any, **kwargs: Any) -> None:
    """Variadic parameters."""


def kwonly(a: Any, /, b: Any, *, c: Any = 3) -> None:
    """Positional-only, normal and keyword-only parameters."""


class Color(enum.Enum):
    RED = 1
    ONE = "1"


class Shade(enum.Enum):
    RED = 1


@dataclasses.dataclass(frozen=True)
class Point:
    x: Any
    y: Any


class User(pydantic.BaseModel):
    id: int
    name: str
    tags: dict[str, int] = {}


class Service:
    def method(self, x: Any) -> None:
        """An instance method."""

    @classmethod
    def klass(cls, x: Any) -> None:
        """A classmethod."""

    @staticmethod
    def static(x: Any) -> None:
        """A staticmethod."""


def key_of(func: Callable[..., Any], *args: Any, prefix: str = "p", **kwargs: Any) -> str:
    """The default key of one call of ``func``."""
    return KeyBuilder(func).for_prefix(prefix)(args, kwargs)


def ns(func: Callable[..., Any]) -> str:
    """``module.qualname`` of a test function."""
    return f"{func.__module__}.{func.__qualname__}"


# --- default keys ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (42, "42"),
        (-7, "-7"),
        ("abc", "'abc'"),
        (1.0, "1.0"),
        (True, "True"),
        (False, "False"),
        (None, "None"),
        (b"1", "b'1'"),
        ([1, "a"], "[1,'a']"),
        ((1, "a"), "(1,'a')"),
        ({"b": 1, "a": 2}, "dict('a'=2,'b'=1)"),
        ({"b", "a"}, "set('a','b')"),
        (frozenset({2, 1}), "frozenset(1,2)"),
        (dt.datetime(2024, 1, 2, 3, 4, 5), "datetime(2024-01-02T03:04:05)"),
        (dt.date(2024, 1, 2), "date(2024-01-02)"),
        (dt.time(3, 4), "time(03:04:00)"),
        (uuid.UUID(int=1), "uuid(00000000-0000-0000-0000-000000000001)"),
        (Decimal("1.10"), "decimal(1.10)"),
        (Color.RED, f"{__name__}.Color(1)"),
        (Point(1, "a"), f"{__name__}.Point(x=1,y='a')"),
        (User(id=1, name="n"), f"{__name__}.User(id=1,name='n',tags=dict())"),
    ],
)
def test_default_key_encodes_each_type_readably(value: Any, encoded: str) -> None:
    assert key_of(get_user, value, prefix="myapp") == f"myapp:{ns(get_user)}:{encoded}"
    assert encode_args([("user_id", value)]) == encoded


def test_spellings_of_one_call_give_one_key() -> None:
    builder = KeyBuilder(pair).for_prefix("p")
    spellings = [((1, 2), {}), ((1,), {"b": 2}), ((), {"a": 1, "b": 2}), ((1,), {})]
    assert len({builder(args, kwargs) for args, kwargs in spellings}) == 1
    assert builder((1,), {}) == f"p:{ns(pair)}:1:2"
    other = KeyBuilder(kwonly).for_prefix("p")
    assert other((1, 2), {}) == other((1,), {"b": 2, "c": 3}) == f"p:{ns(kwonly)}:1:2:3"


def test_typed_values_give_distinct_keys() -> None:
    values = [1, 1.0, "1", True, None, b"1", 0, False, [1], (1,), {1}, Color.RED, Shade.RED]
    assert len({key_of(get_user, v) for v in values}) == len(values)
    assert key_of(pair, "a:b", "c") != key_of(pair, "a", "b:c")
    assert key_of(pair, "a',b", "c") != key_of(pair, "a", "b,'c")


def test_floats_are_deterministic_for_signed_zero_and_nan() -> None:
    assert key_of(get_user, -0.0) != key_of(get_user, 0.0)
    nan = key_of(get_user, float("nan"))
    assert nan == key_of(get_user, -float("nan")) == f"p:{ns(get_user)}:nan"
    assert key_of(get_user, float("inf")) != key_of(get_user, float("-inf"))


def test_sets_and_dicts_are_in_canonical_order() -> None:
    assert key_of(get_user, {"b": 1, "a": 2}) == key_of(get_user, {"a": 2, "b": 1})
    assert key_of(get_user, {"zz", "a", "m"}) == key_of(get_user, {"m", "a", "zz"})
    assert key_of(get_user, {(1, "x"): {3, 2}}) == key_of(get_user, {(1, "x"): {2, 3}})


def test_objects_encode_by_class_and_fields() -> None:
    class Point2(Point):
        pass

    assert key_of(get_user, Point(1, 2)) != key_of(get_user, Point2(1, 2))
    assert key_of(get_user, Point(1, 2)) != key_of(get_user, Point(2, 1))
    assert key_of(get_user, User(id=1, name="a")) != key_of(get_user, User(id=1, name="b"))

    class Dumpable:
        def model_dump(self) -> dict[str, Any]:
            return {"z": 1, "not an identifier": [2]}

    assert key_of(get_user, Dumpable()).endswith(".Dumpable(z=1,'not an identifier'=[2])")


def test_huge_ints_do_not_depend_on_the_digit_limit() -> None:
    before = key_of(get_user, 10**700), key_of(get_user, -(10**700)), key_of(get_user, 10**500)
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)
    try:
        after = key_of(get_user, 10**700), key_of(get_user, -(10**700)), key_of(get_user, 10**500)
    finally:
        sys.set_int_max_str_digits(limit)
    assert before == after
    assert len(set(before)) == 3


@pytest.mark.parametrize("value", [object(), bytearray(b"x"), [1, {2: object()}], Service])
def test_unsupported_argument_raises_serialization_error(value: Any) -> None:
    with pytest.raises(SerializationError) as info:
        key_of(get_user, value)
    message = str(info.value)
    assert "'user_id'" in message
    assert "key=" in message and "ignore=" in message
    assert isinstance(info.value, TypeError)


def test_serialization_error_names_the_type() -> None:
    class Opaque:
        pass

    with pytest.raises(SerializationError, match="Opaque"):
        key_of(get_user, Opaque())


def test_cyclic_argument_raises_serialization_error() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(SerializationError, match="'user_id'"):
        key_of(get_user, loop)


def test_control_characters_and_braces_are_escaped() -> None:
    key = key_of(pair, "a{b}\n\x00\u200b'\\", b"{\xff}")
    assert key == (f"p:{ns(pair)}:'a\\x7bb\\x7d\\x0a\\x00\\u200b\\'\\\\':b'\\x7b\\xff\\x7d'")
    assert key.isprintable()
    assert key_of(get_user, "é€") == f"p:{ns(get_user)}:'é€'"
    assert key_of(get_user, "\ud800").isprintable()  # a lone surrogate, still valid UTF-8 out
    key_of(get_user, "\ud800").encode()


def test_methods_leave_out_self_and_cls() -> None:
    method = KeyBuilder(Service.method).for_prefix("p")
    assert method((Service(), 1), {}) == method((Service(), 1), {}) == f"p:{ns(Service.method)}:1"
    klass = KeyBuilder(Service.__dict__["klass"]).for_prefix("p")
    assert klass((Service, 1), {}) == f"p:{ns(Service.klass)}:1"
    static = KeyBuilder(Service.__dict__["static"]).for_prefix("p")
    assert static((1,), {}) == f"p:{ns(Service.static)}:1"


def test_ignored_arguments_are_left_out() -> None:
    builder = KeyBuilder(pair, ignore=["b"]).for_prefix("p")
    assert builder((1, object()), {}) == builder((1,), {"b": "x"}) == f"p:{ns(pair)}:1"
    assert KeyBuilder(pair, ignore="a").for_prefix("p")((1, 5), {}) == f"p:{ns(pair)}:5"


def test_variadic_parameters_encode_as_list_and_sorted_dict() -> None:
    builder = KeyBuilder(variadic).for_prefix("p")
    assert builder((1, 2, 3), {"z": 1, "m": 2}) == f"p:{ns(variadic)}:1:[2,3]:dict('m'=2,'z'=1)"
    assert builder((1, 2, 3), {"z": 1, "m": 2}) == builder((1, 2, 3), {"m": 2, "z": 1})
    assert builder((1,), {}) == f"p:{ns(variadic)}:1:[]:dict()"


def test_functions_without_parameters_share_one_key() -> None:
    def nothing() -> None:
        pass

    assert KeyBuilder(nothing).for_prefix("p")((), {}) == f"p:{ns(nothing)}:"


def test_name_and_version_make_the_namespace() -> None:
    builder = KeyBuilder(named("users.get"), version=2)
    assert builder.name == "users.get"
    assert builder.namespace == "users.get:v2"
    assert builder.for_prefix("app")((42,), {}) == "app:users.get:v2:42"
    assert KeyBuilder(get_user).namespace == ns(get_user)
    assert KeyBuilder(get_user, version="2024-01").namespace == f"{ns(get_user)}:v2024-01"


@pytest.mark.parametrize("version", ["a:b", "a b", "", "{x}", True, 1.5, "\n"])
def test_bad_version_is_a_configuration_error(version: Any) -> None:
    with pytest.raises(ConfigurationError):
        KeyBuilder(get_user, version=version)


@pytest.mark.parametrize("name", ["a b", "{tag}", "#x.f", "~m.f", "a\tb", "m.f\n"])
def test_bad_name_is_a_configuration_error(name: str) -> None:
    with pytest.raises(ConfigurationError):
        KeyBuilder(named(name))


def test_unknown_ignore_name_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="nope"):
        KeyBuilder(pair, ignore=["a", "nope"])


def test_bad_key_option_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        KeyBuilder(pair, key=42)  # type: ignore[arg-type]  # deliberately wrong


# --- long keys ---------------------------------------------------------------------------------

HEX32 = "[0-9a-f]{32}"


def test_long_default_keys_are_hashed_deterministically() -> None:
    key = key_of(get_user, "x" * 300)
    assert re.fullmatch(rf"p:{re.escape(ns(get_user))}:#{HEX32}", key)
    assert key == key_of(get_user, "x" * 300)
    assert key != key_of(get_user, "x" * 301)
    assert key.endswith(hashed(encode_args([("user_id", "x" * 300)])))


def test_key_length_is_counted_in_utf8_bytes() -> None:
    short_in_chars = "€" * 80  # 80 characters, 240 bytes
    key = key_of(get_user, short_in_chars)
    assert "#" in key
    assert len(key.encode()) <= MAX_KEY_BYTES
    fits = "x" * (MAX_KEY_BYTES - len(f"p:{ns(get_user)}:''"))
    assert key_of(get_user, fits) == f"p:{ns(get_user)}:'{fits}'"
    assert "#" in key_of(get_user, fits + "x")


def test_long_namespace_hashes_everything_after_the_prefix() -> None:
    name = "m." + "n" * 238
    builder = KeyBuilder(named(name)).for_prefix("p")
    assert builder((1,), {}) == f"p:{name}:1"  # long, but it fits: kept
    key = builder(("abcdefgh",), {})
    assert re.fullmatch(rf"p:#{HEX32}", key)
    assert key == "p:#" + hashed(name + ":'abcdefgh'")
    assert builder(("abcdefgi",), {}) != key


def test_too_long_prefix_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        KeyBuilder(get_user).for_prefix("p" * 230)
    with pytest.raises(ConfigurationError):
        KeyBuilder(get_user).for_prefix("")


def test_hashed_is_blake2b_128_hex() -> None:
    assert hashed("abc") == hashlib.blake2b(b"abc", digest_size=16).hexdigest()
    assert len(hashed("")) == 32


# --- str templates -----------------------------------------------------------------------------


@dataclasses.dataclass
class Account:
    id: int
    region: str


def load(account: Account, analysis_id: str, opts: dict[str, Any] | None = None) -> None:
    """A function with an object, a str and a dict parameter."""


def test_template_key_is_prefix_and_formatted_text() -> None:
    acct = Account(7, "eu")
    builder = KeyBuilder(load, key="analysis:{analysis_id}").for_prefix("p")
    assert builder((acct, "a1"), {}) == "p:analysis:a1"
    assert builder((acct,), {"analysis_id": "a1"}) == "p:analysis:a1"
    attrs = KeyBuilder(load, key="acct:{account.id}:{opts[k]}:{analysis_id!r:>6}")
    assert attrs.for_prefix("p")((acct, "x", {"k": 5}), {}) == "p:acct:7:5:   'x'"
    versioned = KeyBuilder(load, key="a:{analysis_id}", version=3).for_prefix("p")
    assert versioned((acct, "z"), {}) == "p:a:z:v3"


def test_template_values_are_percent_escaped() -> None:
    builder = KeyBuilder(load, key="{{a}}:{analysis_id}").for_prefix("p")
    key = builder((None, "{x}%\n"), {})
    assert key == "p:%7Ba%7D:%7Bx%7D%25%0A"
    assert builder((None, "%7Bx%7D"), {}) != key  # escaping stays injective


def test_long_template_keys_are_hashed() -> None:
    builder = KeyBuilder(load, key="a:{analysis_id}").for_prefix("p")
    key = builder((None, "y" * 300), {})
    assert key == f"p:#{hashed('a:' + 'y' * 300)}"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("x:{nope}", "nope"),
        ("x:{nope.id}", "nope"),
        ("x:{}", "positional"),
        ("x:{0}", "positional"),
        ("x:{0.id}", "positional"),
        ("x:{analysis_id", "malformed"),
        ("x:}", "malformed"),
        ("x:{analysis_id!z}", "malformed"),
        ("x:{account.}", "malformed"),
        ("x:{opts[k}", "malformed"),
        ("x:{analysis_id:>{width}}", "width"),
        ("", "empty"),  # every call shared one entry: f(2) returned f(1)'s value
    ],
)
def test_bad_templates_fail_at_decoration(template: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        KeyBuilder(load, key=template)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        ((7, "a1", {"k": 5}), "AttributeError: 'int' object has no attribute 'id'"),
        ((Account(7, "eu"), "a1", {}), "KeyError: 'k'"),
        ((Account(7, "eu"), "a1", None), "TypeError"),
    ],
    ids=["attribute", "index", "not-indexable"],
)
@pytest.mark.parametrize("sensitive", [False, True], ids=["plain", "sensitive"])
def test_a_template_field_the_arguments_lack_is_a_serialization_error(
        args: tuple[Any, ...], said: str, sensitive: bool) -> None:
    builder = KeyBuilder(load, key="acct:{account.id}:{opts[k]}").for_prefix(
        "p", (lambda text: "h") if sensitive else None)
    with pytest.raises(SerializationError) as info:
        builder(args, {})
    message = str(info.value)
    assert "'acct:{account.id}:{opts[k]}'" in message and said in message
    assert "eu" not in message and "a1" not in message  # no argument's value
    assert isinstance(info.value.__cause__, AttributeError | LookupError | TypeError)


def test_template_class_works_for_tags() -> None:
    tag = Template("analysis:{analysis_id}", load, what="tag")
    bound = Binder(load).arguments((None, 5), {})
    assert tag.render(bound) == "analysis:5"
    assert Template("t:{a}", ["a"]).render({"a": "{"}) == "t:%7B"
    with pytest.raises(ConfigurationError, match="tag"):
        Template("t:{zz}", load, what="tag")
    with pytest.raises(ConfigurationError, match="tag template must not be empty"):
        Template("", load, what="tag")


# --- callable keys -----------------------------------------------------------------------------


def test_callable_key_gets_the_original_arguments() -> None:
    seen: list[tuple[Any, ...]] = []

    def make(*args: Any, **kwargs: Any) -> str:
        seen.append((args, kwargs))
        return f"custom:{args[1]}"

    service = Service()
    builder = KeyBuilder(Service.method, key=make, version="2").for_prefix("p")
    assert builder((service, 9), {}) == "p:custom:9:v2"
    assert seen == [((service, 9), {})]


def test_callable_key_is_escaped_and_hashed() -> None:
    builder = KeyBuilder(get_user, key=lambda user_id: f"{{u}}:{user_id}").for_prefix("p")
    assert builder(("%",), {}) == "p:%7Bu%7D:%25"
    long_key = builder(("z" * 300,), {})
    assert long_key == f"p:#{hashed('%7Bu%7D:' + 'z' * 300)}"


def test_callable_key_must_return_str() -> None:
    builder = KeyBuilder(get_user, key=lambda user_id: user_id).for_prefix("p")
    with pytest.raises(ConfigurationError, match="get_user"):
        builder((42,), {})


# --- binding -----------------------------------------------------------------------------------


def test_binder_applies_defaults_in_signature_order() -> None:
    binder = Binder(kwonly)
    assert binder.parameters == ("a", "b", "c")
    assert binder.arguments((1,), {"b": 2}) == {"a": 1, "b": 2, "c": 3}
    assert list(binder.arguments((1,), {"c": 0, "b": 2})) == ["a", "b", "c"]
    expected = {"a": 1, "args": (2,), "kwargs": {"k": 3}}
    assert Binder(variadic).arguments((1, 2), {"k": 3}) == expected


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((), {}), ((1, 2, 3), {}), ((1,), {"a": 1}), ((1,), {"z": 1}), ((), {"a": 1, "b": 2})],
)
def test_binder_raises_the_functions_type_error(args: tuple[Any, ...], kwargs: Any) -> None:
    func = kwonly if "a" in kwargs else pair
    with pytest.raises(TypeError):
        func(*args, **kwargs)
    with pytest.raises(TypeError) as info:
        Binder(func).arguments(args, kwargs)
    assert type(info.value) is TypeError
    with pytest.raises(TypeError):
        KeyBuilder(func).for_prefix("p")(args, kwargs)


def test_fast_path_skips_binding(monkeypatch: pytest.MonkeyPatch) -> None:
    builder = KeyBuilder(triple, ignore=["b"]).for_prefix("p")

    def no_binding(*_: Any) -> dict[str, Any]:
        raise AssertionError("bound")

    monkeypatch.setattr(Binder, "arguments", no_binding)
    assert builder((1, object(), "x"), {}) == f"p:{ns(triple)}:1:'x'"
    with pytest.raises(AssertionError):
        builder((1, 2, [3]), {})


# --- properties --------------------------------------------------------------------------------

texts = st.text(alphabet="ab:,'\"\\=()[]{}%#.\x00 é€\U0001d11e", max_size=5) | st.text(max_size=12)
primitives = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.integers(), st.floats(), texts
)
scalars = primitives | st.one_of(
    st.binary(max_size=4),
    st.datetimes(),
    st.dates(),
    st.times(),
    st.uuids(),
    st.decimals(allow_nan=False),
    st.sampled_from([*Color, *Shade]),
)
hashables = st.recursive(
    scalars, lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3), max_leaves=5
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner),
        st.tuples(inner, inner),
        st.dictionaries(hashables, inner, max_size=3),
        st.sets(hashables, max_size=3),
        st.frozensets(hashables, max_size=3),
        st.builds(Point, inner, inner),
    ),
    max_leaves=8,
)


def typed(value: Any) -> Any:
    """A hashable normal form that tells values apart exactly when keys must differ."""
    kind = type(value).__qualname__
    if isinstance(value, float):
        return kind, repr(value)
    if isinstance(value, list | tuple):
        return kind, tuple(map(typed, value))
    if isinstance(value, set | frozenset):
        return kind, frozenset(map(typed, value))
    if isinstance(value, dict):
        return kind, frozenset((typed(k), typed(v)) for k, v in value.items())
    if isinstance(value, Point):
        return kind, typed(value.x), typed(value.y)
    if isinstance(value, enum.Enum):
        return kind, typed(value.value)
    if isinstance(value, Decimal | dt.date | dt.time):
        return kind, str(value)
    return kind, value


@given(st.lists(st.tuples(values, values), min_size=2, max_size=8))
@settings(max_examples=300)
def test_keys_are_injective(calls: list[tuple[Any, Any]]) -> None:
    builder = KeyBuilder(pair).for_prefix("p")
    by_form: dict[Any, str] = {}
    for a, b in calls:
        by_form.setdefault(typed((a, b)), builder((a, b), {}))
    assert len(set(by_form.values())) == len(by_form)


@given(values, values)
def test_keys_are_deterministic(a: Any, b: Any) -> None:
    builder = KeyBuilder(pair).for_prefix("p")
    assert builder((a, b), {}) == KeyBuilder(pair).for_prefix("p")((a,), {"b": b})


@given(primitives, primitives, primitives)
def test_fast_path_equals_slow_path(a: Any, b: Any, c: Any) -> None:
    builder = KeyBuilder(triple).for_prefix("p")
    fast = builder((a, b, c), {})
    assert fast == builder((a,), {"b": b, "c": c}) == builder((), {"a": a, "b": b, "c": c})
    encoded = encode_args([("a", a), ("b", b), ("c", c)])
    assert fast == f"p:{ns(triple)}:{encoded}" or fast == f"p:{ns(triple)}:#{hashed(encoded)}"


safe_prefixes = st.text(alphabet="abc:._-€", min_size=1, max_size=50)


@given(
    safe_prefixes,
    st.text(alphabet="abcxyz._:<>", min_size=1, max_size=300).filter(lambda s: s[0] != "#"),
    values,
    values,
)
def test_default_keys_are_short_printable_and_brace_free(
    prefix: str, name: str, a: Any, b: Any
) -> None:
    key = KeyBuilder(named(name, pair)).for_prefix(prefix)((a, b), {})
    assert len(key.encode()) <= MAX_KEY_BYTES
    assert "{" not in key and "}" not in key
    assert key.isprintable()
    assert key.startswith(prefix + ":")


@given(safe_prefixes, texts | st.text(min_size=200), values)
def test_template_and_callable_keys_are_short_and_brace_free(
    prefix: str, text: str, other: Any
) -> None:
    template = KeyBuilder(pair, key="t{{:{a}:{b!r}").for_prefix(prefix)((text, other), {})
    made = KeyBuilder(pair, key=lambda a, b=None: a).for_prefix(prefix)((text,), {})
    for key in (template, made):
        assert len(key.encode()) <= MAX_KEY_BYTES
        assert "{" not in key and "}" not in key
        assert key.isprintable()
        assert key.startswith(prefix + ":")


SAMPLES_SOURCE = """
import dataclasses, datetime, decimal, enum, uuid

class Mood(enum.Enum):
    HAPPY = "h"

@dataclasses.dataclass
class Box:
    items: object

SAMPLES = [
    42, -1, 10**800, 1.5, -0.0, float("nan"), "abc", "a:b{c}\\n", b"\\x00b", True, None,
    [1, "a", (2.0, None)], {"x", "y", "z", "w"}, frozenset({"q", "r", ("s", 1)}),
    {"k": {"nested", "set"}, "j": [1]}, {("a", 1): "t", ("b", 2): "u"},
    datetime.datetime(2024, 5, 6, 7, 8, 9, 10, tzinfo=datetime.timezone.utc),
    datetime.date(2024, 5, 6), datetime.time(7, 8), uuid.UUID(int=99),
    decimal.Decimal("-1.250"), Mood.HAPPY, Box(items={"p", "q", "r"}),
]
"""

PRINT_KEYS = (
    SAMPLES_SOURCE
    + """
import json
from cachedeco.core.keys.builder import encode_args
print(json.dumps([encode_args([("x", value)]) for value in SAMPLES]))
"""
)


def test_keys_are_the_same_in_other_processes() -> None:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(SAMPLES_SOURCE, namespace)
    here = [encode_args([("x", value)]) for value in namespace["SAMPLES"]]
    root = str(Path(cachedeco.__file__).resolve().parents[1])
    for seed in ("0", "1", "12345"):
        env = {
            **os.environ,
            "PYTHONHASHSEED": seed,
            "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
        }
        out = subprocess.run(
            [sys.executable, "-c", PRINT_KEYS], env=env, capture_output=True, text=True, check=True
        )
        assert json.loads(out.stdout) == here


def test_a_lambda_or_a_partial_needs_a_key() -> None:
    # every lambda of a scope is "<lambda>", every partial "functools.partial": two of them
    # read one another's entries (double(5) returned 10 for triple(5) too)
    reg = cachedeco.Registry("memory://")
    with pytest.raises(ConfigurationError, match=r"needs_a_key\.<locals>\.<lambda> is a lambda"):
        reg.cached(ttl=60)(lambda x: x * 2)
    with pytest.raises(ConfigurationError, match=r"functools\.partial has no name"):
        reg.cached(ttl=60)(functools.partial(load, None))
    double = reg.cached(ttl=60, key="double:{x}")(lambda x: x * 2)
    triple = reg.cached(ttl=60, key=lambda x: f"triple:{x}")(lambda x: x * 3)
    assert (double(5), triple(5)) == (10, 15)


def test_functions_a_factory_makes_are_warned_of_sharing_their_entries(
        caplog: pytest.LogCaptureFixture) -> None:
    # make(2) and make(3) both return make.<locals>.times: the same default keys
    reg = cachedeco.Registry("memory://", prefix="namesakes")

    def make(factor: int, **options: Any) -> Callable[[int], int]:
        @reg.cached(ttl=60, **options)
        def times(x: int) -> int:
            return x * factor

        return times

    twice, thrice = make(2), make(3)
    with caplog.at_level("WARNING", logger="cachedeco"):
        again = cachedeco.Registry("memory://", prefix="namesakes-again")
        same = [again.cached(ttl=60)(twice.__wrapped__) for _ in range(2)]  # one function
        assert [g(5) for g in same] == [10, 10]  # (decorated twice: the same results)
        again.close()
        assert not caplog.records
        assert (twice(5), thrice(5)) == (10, 10)  # thrice read twice's entry: hence the warning
    warned = [r.getMessage() for r in caplog.records if "one name" in r.getMessage()]
    assert len(warned) == 1
    assert "make.<locals>.times" in warned[0] and "key=" in warned[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="cachedeco"):
        apart = [make(f, key=f"times{f}:{{x}}") for f in (4, 5)]  # told apart by key=
        assert [g(5) for g in apart] == [20, 25]
        versions = [make(f, version=f) for f in (6, 7)]  # or by version=
        assert [g(5) for g in versions] == [30, 35]
    assert not [r for r in caplog.records if "one name" in r.getMessage()]
    reg.close()


class Base:
    table = "base"

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant

    @cachedeco.cached(registry=cachedeco.Registry("memory://"), key="{cls.table}:{id}")
    @classmethod
    def load(cls, id: int) -> str:
        return f"{cls.table}:{id}"

    @cachedeco.cached(registry=cachedeco.Registry("memory://"), key="find:{self.tenant}:{id}")
    def find(self, id: int) -> str:
        return f"{self.tenant}:{id}"


class Users(Base):
    table = "users"


class Orders(Base):
    table = "orders"


def test_a_template_names_what_self_and_cls_change() -> None:
    # (left out of default keys: an inherited classmethod's entries are its subclasses' too)
    assert (Users.load(1), Orders.load(1), Users.load(1)) == ("users:1", "orders:1", "users:1")
    assert (Users.load.key(1), Orders.load.key(1)) == ("cachedeco:users:1", "cachedeco:orders:1")
    assert (Users("a").find(1), Users("b").find(1)) == ("a:1", "b:1")
