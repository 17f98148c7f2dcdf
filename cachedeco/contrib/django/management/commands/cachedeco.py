"""``python manage.py cachedeco COMMAND [ARGS]``: the operator CLI (``python -m cachedeco``)
with ``--backend`` and ``--prefix`` taken from ``settings.CACHEDECO`` unless given, and with
the backend options of that setting (TLS, credentials, timeouts) for its backend."""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cachedeco import cli
from cachedeco.contrib.django.conf import SETTING, cachedeco_settings


class _Plain:
    """A text stream over a Django ``OutputWrapper`` that writes what it is given as is
    (the wrapper would add a newline to every ``write``)."""

    def __init__(self, wrapper: Any) -> None:
        self.wrapper = wrapper

    def write(self, text: str) -> int:
        self.wrapper.write(text, ending="")
        return len(text)

    def flush(self) -> None:
        self.wrapper.flush()


def _flags(arguments: list[str]) -> set[str]:
    """The options named among ``arguments`` (``--backend URL`` and ``--backend=URL`` alike)."""
    return {a.split("=", 1)[0] for a in arguments}


def cli_arguments(arguments: list[str], options: dict[str, Any] | None) -> list[str]:
    """The CLI's arguments: `arguments` plus `--backend` and `--prefix` from the settings
    when they are not among them (and a command was given: `--help` alone stays as is)."""
    given = _flags(arguments)
    if not options or not arguments or arguments[0].startswith("-"):
        return list(arguments)
    extra: list[str] = []
    backend = options.get("backend")
    if "--backend" not in given and backend is not None:
        if not isinstance(backend, str):
            raise CommandError(f"settings.{SETTING}['backend'] is a client, not a URL: pass "
                               "--backend URL")
        extra += ["--backend", backend]
    if "--prefix" not in given and "prefix" in options:
        extra += ["--prefix", str(options["prefix"])]
    return [*arguments, *extra]


class Command(BaseCommand):
    help = ("The cachedeco operator CLI (stats, invalidate-tags, inspect, clear) on the backend "
            f"and prefix of settings.{SETTING}; `manage.py cachedeco stats --help` for one "
            "command's options.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("arguments", nargs=argparse.REMAINDER,
                            help="a cachedeco command and its arguments, e.g. "
                                 "invalidate-tags product:42")

    def handle(self, *args: Any, **options: Any) -> None:
        settings = cachedeco_settings()
        arguments = list(options["arguments"])
        argv = cli_arguments(arguments, settings)
        # the setting's backend options go with the setting's backend, not another one
        backend_options = (cli.backend_options(settings)
                           if settings is not None and "--backend" not in _flags(arguments)
                           else None)
        with contextlib.redirect_stdout(_Plain(self.stdout)), \
                contextlib.redirect_stderr(_Plain(self.stderr)):
            try:
                status = cli.main(argv, options=backend_options)
            except SystemExit as exc:  # argparse: --help (0) or bad usage (2)
                status = exc.code if isinstance(exc.code, int) else 2
        if status:
            raise CommandError(f"cachedeco exited with status {status}", returncode=status)
