"""`csauto people`: the people directory (people.yaml)."""

from __future__ import annotations

import typer

app = typer.Typer(help="The people directory (people.yaml).", no_args_is_help=True)


@app.command("hash-password")
def hash_password() -> None:
    """Prompt for a password and print its argon2 hash, for a sign_in: entry."""
    from csautomation.api.auth import hash_password_command

    hash_password_command()
