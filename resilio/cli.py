"""The ``resilio`` command: check configurations, print the JSON Schema, list plugins.

Subcommands come from a registry: the built-in ones here, then every module of
:data:`EXTENSION_MODULES` that can be imported and has a ``register(subparsers)`` function
(``resilio.telemetry.cli`` adds ``health``, ``resilio.outbox.cli`` adds ``outbox``). A
subcommand sets ``func`` with ``parser.set_defaults(func=...)``; ``func(args)`` returns the
exit code.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

__all__ = ["EXTENSION_MODULES", "PIPE_CLOSED", "build_parser", "main", "quiet_on_closed_pipe"]

EXTENSION_MODULES = ("resilio.telemetry.cli", "resilio.outbox.cli")
"""Modules that may add subcommands through ``register(subparsers)``."""

Command = Callable[[argparse.Namespace], int]


def _out(args: argparse.Namespace) -> TextIO:
    stream: TextIO = getattr(args, "stdout", None) or sys.stdout
    return stream


def _err(args: argparse.Namespace) -> TextIO:
    stream: TextIO = getattr(args, "stderr", None) or sys.stderr
    return stream


def _print_problems(args: argparse.Namespace, problems: list[str], what: str) -> None:
    err = _err(args)
    count = len(problems)
    print(f"{what}: {count} problem{'s' if count != 1 else ''}", file=err)
    for line in problems:
        print(f"  {line}", file=err)


_SPECIAL = set(":#,[]{}&*!|>'\"%@`")


def _flow(value: Any) -> str:
    """Show a configuration value as YAML flow text that reads back as the same value.

    A string is quoted when it would read as something else (a number, a boolean under YAML
    1.1 or 1.2, null) or contains YAML punctuation, so ``"on"`` and ``"3"`` stay strings.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if value != value:
            return ".nan"
        if value in (float("inf"), float("-inf")):
            return ".inf" if value > 0 else "-.inf"
        return repr(value)
    if isinstance(value, str):
        return str(value) if _plain_safe(value) else json.dumps(str(value))
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_flow(str(k))}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return json.dumps(str(value))


def _plain_safe(text: str) -> bool:
    import yaml

    from resilio.config.env import core_scalar

    if not text or text != text.strip() or text[0] in "-?" or _SPECIAL & set(text):
        return False
    if not text.isprintable():
        return False
    yaml11 = yaml.resolver.Resolver().resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
    return bool(yaml11 == "tag:yaml.org,2002:str" and core_scalar(text) == text)


def _option_text(config: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_flow(v)}" for k, v in config.items())


def _check(args: argparse.Namespace) -> int:
    from resilio.config import load_config
    from resilio.errors import ConfigError, PluginError

    try:
        registry = load_config(args.file, telemetry=False)
    except PluginError as exc:  # a ConfigError too, but not the file's fault
        _print_problems(args, exc.problems, "plugins")
        return 1
    except ConfigError as exc:
        _print_problems(args, exc.problems, f"{args.file}: invalid")
        return 1
    out = _out(args)
    described = registry.describe()
    print(f"{args.file}: OK, {len(described)} pipeline(s)", file=out)
    for name, slots in described.items():
        print(f"{name}:", file=out)
        for i, slot in enumerate(slots, 1):
            label = slot.kind if slot.name in (None, slot.kind) else f"{slot.kind} {slot.name!r}"
            if slot.ref is not None:
                label += f" (shared: {slot.ref})"
            options = _option_text(slot.config)
            print(f"  {i}. {label}" + (f": {options}" if options else ""), file=out)
    return 0


def _schema(args: argparse.Namespace) -> int:
    from resilio.config import json_schema
    from resilio.errors import PluginError

    try:
        schema = json_schema()
    except PluginError as exc:
        _print_problems(args, exc.problems, "plugins")
        return 1
    print(json.dumps(schema, indent=2, sort_keys=False), file=_out(args))
    return 0


def _plugins(args: argparse.Namespace) -> int:
    from resilio.errors import PluginError
    from resilio.plugins.manager import plugin_system

    try:
        system = plugin_system()
    except PluginError as exc:
        _print_problems(args, exc.problems, "plugins")
        return 1
    out = _out(args)
    cat = system.catalog
    for info in system.plugins:
        where = f" ({info.distribution})" if info.distribution else ""
        state = " [blocked]" if info.blocked else ""
        print(f"{info.name}{state}: {info.source}{where}", file=out)
        if info.hooks:
            print(f"  hooks: {', '.join(info.hooks)}", file=out)
        for title, registry in (
            ("policy types", cat.policy_types),
            ("operations", cat.operations),
            ("store kinds", cat.store_kinds),
        ):
            names = [n for n in registry if registry.provider(n) == info.name]
            if names:
                print(f"  {title}: {', '.join(names)}", file=out)
    return 0


def _register_builtin(subparsers: Any) -> None:
    check = subparsers.add_parser(
        "check",
        help="validate a configuration file and show its pipelines",
        description="Validate a configuration file; print each pipeline's policies in order, "
        "or every problem (exit status 1).",
    )
    check.add_argument("file", help="the YAML configuration file")
    check.set_defaults(func=_check)
    schema = subparsers.add_parser(
        "schema",
        help="print the JSON Schema of configuration files",
        description="Print the JSON Schema (draft 2020-12) of configuration files, including "
        "policy types that plugins register.",
    )
    schema.set_defaults(func=_schema)
    plugins = subparsers.add_parser(
        "plugins",
        help="list plugins, their hooks and what they register",
        description="List the discovered plugins (entry-point group 'resilio'), their hooks, "
        "policy types, operations and store kinds.",
    )
    plugins.set_defaults(func=_plugins)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every available subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="resilio", description="Resilience pipelines: configuration and plugins."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _register_builtin(subparsers)
    for module_name in EXTENSION_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module_name.startswith(exc.name):
                continue  # that part of resilio is not installed
            raise
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


PIPE_CLOSED = 141
"""Exit status when the reader of standard output went away (``resilio schema | head``).

It is what a shell reports for a command ended by SIGPIPE (128 + 13), the status of other
command-line tools in the same situation, so ``set -o pipefail`` scripts can tell it apart."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``resilio`` command.

    If standard output is a pipe whose reader closed early (``resilio schema | head``), the
    command stops quietly, without a traceback, and returns :data:`PIPE_CLOSED`.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 1 when a configuration or plugin is invalid, 2 on a
        usage error, 141 when the reader of standard output closed it.
    """
    return quiet_on_closed_pipe(lambda: _run(argv))


def quiet_on_closed_pipe(run: Callable[[], int]) -> int:
    """Run a command; if the reader of standard output closed it, stop quietly.

    Standard output is flushed before returning (on an exit too, as for ``--help``), so a
    closed pipe is seen here rather than at interpreter exit. A command that reports its own
    errors must let :class:`BrokenPipeError` through to this.

    Args:
        run: The command; returns its exit status.

    Returns:
        The command's exit status, or :data:`PIPE_CLOSED` when standard output's reader went
        away (nothing is printed; later writes to standard output are discarded).
    """
    try:
        try:
            status = run()
        finally:
            sys.stdout.flush()
    except BrokenPipeError:
        _discard_stdout()
        return PIPE_CLOSED
    return status


def _discard_stdout() -> None:
    # Python flushes stdout again at exit; point it at /dev/null so that flush cannot fail.
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (a test's buffer)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Command | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    return func(args)
