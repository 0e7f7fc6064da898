"""``envstore settings``, ``envstore policy check`` and ``envstore audit``: the policy and the
record of changes, through the REST API like every client command.

A level is written ``NS`` or ``NS/ENV``; none means the global settings. Values of
``settings set KEY=VALUE`` are JSON when they parse as JSON (``40``, ``true``,
``["conda-forge"]``, ``null`` to unset) and plain text otherwise (``freeze_date=2024-06-01``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from envstore.cli.common import open_client
from envstore.cli.output import out_console, print_json, print_table
from envstore.core.names import validate_name
from envstore.errors import InvalidInput

__all__ = ["audit_command", "policy_app", "settings_app"]

settings_app = typer.Typer(help="Read and change policy settings (global, NS or NS/ENV).")
policy_app = typer.Typer(help="Check current environments against the policy in force.")

JsonOption = Annotated[bool, typer.Option("--json", help="Print the raw JSON answer.")]
LevelArg = Annotated[
    str | None, typer.Argument(metavar="[NS[/ENV]]", help="A namespace or NS/ENV; none: global.")
]


def parse_level(text: str | None) -> tuple[str, ...]:
    """``()`` (global), ``(ns,)`` or ``(ns, env)``, names checked locally first."""
    if not text:
        return ()
    parts = text.strip("/").split("/")
    if len(parts) > 2:
        raise InvalidInput(f"{text!r}: expected NAMESPACE or NAMESPACE/ENVIRONMENT")
    kinds = ("namespace", "environment name")
    return tuple(validate_name(part, kind=kind) for part, kind in zip(parts, kinds, strict=False))


def parse_assignment(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise InvalidInput(f"{text!r}: expected KEY=VALUE (VALUE as JSON, or text)")
    try:
        value = json.loads(raw) if raw.strip() else None
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def _show(value: Any) -> str:
    if value is None:
        return "-"
    return value if isinstance(value, str) else json.dumps(value)


def _print_settings(answer: dict[str, Any]) -> None:
    data, sources = answer.get("data") or {}, answer.get("sources") or {}
    rows = [
        [key, _show(value), _show(sources.get(key)) if value is not None else "-"]
        for key, value in sorted(data.items())
    ]
    out_console().print(f"settings of {answer.get('level', 'global')} (merged):")
    print_table(["setting", "value", "from"], rows, empty="no settings")


@settings_app.command("get")
def get(ctx: typer.Context, level: LevelArg = None, as_json: JsonOption = False) -> None:
    """The settings in force at a level, merged global → namespace → environment."""
    where = parse_level(level)
    with open_client(ctx) as client:
        answer = client.settings(where)
    print_json(answer) if as_json else _print_settings(answer)


@settings_app.command("set")
def set_(
    ctx: typer.Context,
    args: Annotated[list[str], typer.Argument(metavar="[NS[/ENV]] KEY=VALUE...")],
    as_json: JsonOption = False,
) -> None:
    """Change settings of a level (admins of that level); VALUE null unsets a key."""
    level = parse_level(args[0]) if args and "=" not in args[0] else ()
    pairs = args[1:] if level else args
    if not pairs:
        raise InvalidInput("give at least one KEY=VALUE")
    changes = dict(parse_assignment(pair) for pair in pairs)
    with open_client(ctx) as client:
        answer = client.update_settings(level, changes)
    if as_json:
        print_json(answer)
        return
    out_console().print(str(answer.get("message") or "settings updated"))
    _print_settings(answer)


@settings_app.command("history")
def history(
    ctx: typer.Context,
    level: LevelArg = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="At most N (0: all).")] = 0,
    as_json: JsonOption = False,
) -> None:
    """Every change of a level's settings: when, who, the old and the new value."""
    where = parse_level(level)
    with open_client(ctx) as client:
        changes = client.setting_history(where, limit)
    if as_json:
        print_json(changes)
        return
    rows = [
        [str(c.get("changed_on")), str(c.get("changed_by")), str(c.get("key")),
         _show(c.get("old_value")), _show(c.get("new_value"))]
        for c in changes
    ]  # fmt: skip
    print_table(["when", "who", "setting", "old", "new"], rows, empty="no changes")


@policy_app.command("check")
def check(ctx: typer.Context, level: LevelArg = None, as_json: JsonOption = False) -> None:
    """List current environments that the policy now in force would refuse (exit 1 if any)."""
    where = parse_level(level)
    namespace = where[0] if where else None
    environment = where[1] if len(where) > 1 else None
    with open_client(ctx) as client:
        answer = client.policy_check(namespace, environment)
    found = answer.get("data") or []
    if as_json:
        print_json(found)
    else:
        rows = [
            [f"{env['namespace']}/{env['environment']}", str(env["build_id"]), v["message"]]
            for env in found
            for v in env["violations"]
        ]
        out_console().print(str(answer.get("message") or ""))
        print_table(["environment", "build", "violation"], rows, empty="nothing to report")
    if found:
        raise typer.Exit(1)


def audit_command(
    ctx: typer.Context,
    namespace: Annotated[str | None, typer.Option("--namespace", "-n")] = None,
    environment: Annotated[str | None, typer.Option("--environment", "-e")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Who made the change.")] = None,
    kind: Annotated[
        str | None, typer.Option("--kind", help="e.g. setting.update, or a prefix: environment.")
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="ISO date or datetime, UTC.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="ISO date or datetime, UTC.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="At most N (0: all).")] = 0,
    as_json: JsonOption = False,
) -> None:
    """The audit log (administrators): who changed what, when, from where, oldest first."""
    filters = {
        "namespace": namespace,
        "environment": environment,
        "actor": actor,
        "kind": kind,
        "since": since,
        "until": until,
    }
    with open_client(ctx) as client:
        events = client.audit(filters, limit)
    if as_json:
        print_json(events)
        return
    rows = [
        [str(e["occurred_on"]), e["actor"], e.get("address") or "-", e["kind"],
         "/".join(p for p in (e.get("namespace"), e.get("environment")) if p) or "-",
         e.get("target") or "", _changes(e)]
        for e in events
    ]  # fmt: skip
    print_table(
        ["when", "who", "from", "what", "where", "target", "change"], rows, empty="no events"
    )


def _changes(event: dict[str, Any]) -> str:
    before, after = event.get("before"), event.get("after")
    if before is None and after is None:
        return ""
    if before is None:
        return _show(after)
    return f"{_show(before)} -> {_show(after)}"
