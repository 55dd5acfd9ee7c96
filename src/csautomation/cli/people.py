"""`csauto people`: the people directory (people.yaml), and ending a person's sessions."""

from __future__ import annotations

import typer

from csautomation import bootstrap
from csautomation.cli.common import DbOpt, open_store, out, plain
from csautomation.errors import CsAutomationError

app = typer.Typer(help="The people directory (people.yaml).", no_args_is_help=True)


@app.command("hash-password")
def hash_password() -> None:
    """Prompt for a password and print its argon2 hash, for a sign_in: entry."""
    from csautomation.api.auth import hash_password_command

    hash_password_command()


@app.command("revoke")
def revoke(
    person: str = typer.Argument(help="person id in people.yaml"),
    database_url: DbOpt = None,
) -> None:
    """End every session of PERSON on the review pages at once (a lost laptop, someone
    leaving). They can sign in again with their password: to stop that too, remove their
    sign_in: entry (and their API tokens) from people.yaml."""
    from csautomation.escalation.people import load_people
    from csautomation.references import did_you_mean
    from csautomation.store.signins import end_sessions

    settings = bootstrap.settings(database_url=database_url)
    if settings.people_path.exists():
        known = [p.id for p in load_people(settings.people_path).people]
        if person not in known:
            raise CsAutomationError(
                f"{person}: no such person in {settings.people_path}"
                f"{did_you_mean(person, set(known))}"
            )
    generation = end_sessions(open_store(database_url), person)
    out.print(plain(f"every session of {person} has ended (session generation {generation})"))
