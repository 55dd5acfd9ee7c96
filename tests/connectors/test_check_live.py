"""`csauto connectors check` against live services (the fake vendors over HTTPS): one
authenticated call per enabled connector, a verdict each, exit code 1 when one fails,
and never a credential in what it prints."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from csautomation.cli import app
from fakes.vendors import Vendors

runner = CliRunner()
NAMES = ("salesforce", "zendesk", "hubspot", "slack", "ops-hook")


def check(vendors: Vendors, tmp_path: Path, **override: str) -> tuple[int, dict[str, str]]:
    folder = tmp_path / "connectors"
    vendors.ca_file(tmp_path)  # tmp_path/fake-vendor-ca.pem
    if not folder.exists():  # each file names the fakes' CA beside it: no environment needed
        vendors.write_configs(folder, ca_bundle="../fake-vendor-ca.pem")
    env = vendors.credentials() | override
    env |= {"CSAUTO_CONNECTORS_PATH": str(folder)}
    result = runner.invoke(app, ["connectors", "check"], env=env, terminal_width=300)
    lines = {n: next(x for x in result.output.splitlines() if f" {n} " in x) for n in NAMES}
    return result.exit_code, lines


def test_every_enabled_connector_is_verified_against_its_service(
    vendors: Vendors, tmp_path: Path
) -> None:
    code, lines = check(vendors, tmp_path)
    assert code == 0, lines
    assert all(" ok: " in line for line in lines.values()), lines
    assert "authenticated (password)" in lines["salesforce"]
    assert len(list(vendors.salesforce.calls("POST", "/services/oauth2/token"))) == 1


def test_a_refused_credential_fails_its_connector_only_and_is_never_printed(
    vendors: Vendors, tmp_path: Path
) -> None:
    wrong = "pat-na1-wrong-0000-revoked-token"
    code, lines = check(vendors, tmp_path, HUBSPOT_TOKEN=wrong, SF_PASSWORD="not-the-password")
    assert code == 1
    assert "FAILED" in lines["hubspot"] and "401" in lines["hubspot"]
    assert "FAILED" in lines["salesforce"]
    assert all(" ok: " in lines[n] for n in ("zendesk", "slack", "ops-hook"))
    printed = "\n".join(lines.values())
    assert wrong not in printed and "not-the-password" not in printed
