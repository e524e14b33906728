"""``maskops keys create|list|revoke``: API keys of the service (stored hashed under the work dir)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from maskops.serve.keys import KeyStore

app = typer.Typer(no_args_is_help=True)

DB = typer.Option(
    None,
    "--db",
    help="Key store, a SQLite file (default: MASKOPS_KEYS_DB, else the PostgreSQL of MASKOPS_DATABASE_URL, "
    "else <work_dir>/serve/keys.db).",
)


def _store(db: Path | None) -> KeyStore:
    from maskops.serve.keys import open_key_store
    from maskops.serve.settings import ServeSettings

    return open_key_store(ServeSettings(), db)


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(code=2)


@app.command()
def create(
    name: str = typer.Argument(..., help="Who or what the key is for."),
    role: str = typer.Option("predict", "--role", help="predict (inference routes) or admin (also reload)."),
    rate: float = typer.Option(
        None, "--rate", help="Requests per second for this key (default: the server's)."
    ),
    db: Path = DB,
) -> None:
    """Create a key and print it once (only its hash is stored)."""
    from maskops.serve.keys import KeyStoreError

    store = _store(db)
    try:
        key, plain = store.create(name, role, rate)
    except KeyStoreError as exc:
        raise _fail(exc) from exc
    finally:
        store.close()
    typer.echo(plain)
    typer.echo(f"created key {key.id} ({key.name}, role {key.role}); it is shown only now", err=True)


@app.command("list")
def list_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    db: Path = DB,
) -> None:
    """List keys (ids, names, roles, state); secrets are never shown."""
    from rich.console import Console
    from rich.table import Table

    store = _store(db)
    try:
        keys = store.list()
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps([asdict(k) for k in keys], indent=2))
        return
    table = Table(title="API keys")
    for col in ("id", "name", "role", "rate/s", "created", "revoked"):
        table.add_column(col)
    for k in keys:
        rate = "-" if k.rate_per_s is None else f"{k.rate_per_s:g}"
        table.add_row(k.id, k.name, k.role, rate, k.created_at, k.revoked_at or "-")
    Console().print(table)


@app.command()
def revoke(
    key_id: str = typer.Argument(..., help="The key's id (see `maskops keys list`)."), db: Path = DB
) -> None:
    """Revoke a key: the server refuses it from the next request on."""
    from maskops.serve.keys import KeyStoreError

    store = _store(db)
    try:
        key = store.revoke(key_id)
    except KeyStoreError as exc:
        raise _fail(exc) from exc
    finally:
        store.close()
    typer.echo(f"revoked key {key.id} ({key.name}) at {key.revoked_at}")


@app.command()
def entry(
    name: str = typer.Argument(..., help="Who or what the key is for (letters, digits, '.', '_', '-')."),
    role: str = typer.Option("predict", "--role", help="predict (inference routes) or admin (also reload)."),
    rate: float = typer.Option(
        None, "--rate", help="Requests per second for this key (default: the server's)."
    ),
) -> None:
    """Print a MASKOPS_API_KEYS entry (name:role:key[:rate]) with a new random key; nothing is stored.

    Put the line in MASKOPS_API_KEYS (entries separated by commas) or in the secret file named by
    MASKOPS_API_KEYS_FILE (one entry a line); clients send the key part.
    """
    from maskops.serve.keys import KeyProvisioningError, new_key, parse_key_entry

    line = f"{name}:{role}:{new_key()}" + ("" if rate is None else f":{rate:g}")
    try:
        parse_key_entry(line, "the entry")
    except KeyProvisioningError as exc:
        raise _fail(exc) from exc
    typer.echo(line)
