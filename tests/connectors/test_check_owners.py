"""`csauto connectors check` resolves every person of people.yaml at each enabled task
connector (the HTTPS fakes, through the real clients): resolved N of M, the ones it cannot
by id and name with the reason, and exit code 1 when their tasks would be dead letters
(no fallback_owner to take them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from csautomation.cli import app
from fakes.vendors import SHIPPED_PEOPLE, Vendors, shipped_user_id

runner = CliRunner()
SHIPPED = Path(__file__).resolve().parents[2] / "connectors"
TASK_VENDORS = ("salesforce", "zendesk", "hubspot")


def shipped_configs(vendors: Vendors, folder: Path, **extra: Any) -> Path:
    """The shipped connectors/{salesforce,zendesk,hubspot}.yaml as they are, enabled and
    pointed at the fakes; `extra` goes into each."""
    folder.mkdir()
    where = {
        "salesforce": {"login_url": vendors.salesforce.url},
        "zendesk": {"url": vendors.zendesk.url},
        "hubspot": {"url": vendors.hubspot.url},
    }
    for name in TASK_VENDORS:
        doc = yaml.safe_load((SHIPPED / f"{name}.yaml").read_text(encoding="utf-8"))
        doc["connector"].pop("subdomain", None)
        doc["connector"] |= {"enabled": True} | where[name] | extra
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    return folder


def check(
    vendors: Vendors, tmp_path: Path, people: Path = SHIPPED_PEOPLE, *args: str, **extra: Any
) -> tuple[int, str]:
    folder = shipped_configs(vendors, tmp_path / "connectors", **extra)
    ca = vendors.ca_file(tmp_path)
    env = vendors.credentials() | {
        "ZENDESK_EMAIL": vendors.zendesk.email,
        "ZENDESK_API_TOKEN": vendors.zendesk.token,
        "CSAUTO_CONNECTORS_PATH": str(folder),
        "CSAUTO_PEOPLE_PATH": str(people),
        "REQUESTS_CA_BUNDLE": ca,
        "SSL_CERT_FILE": ca,
    }
    result = runner.invoke(app, ["connectors", "check", *args], env=env, terminal_width=300)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, " ".join(result.output.split())  # rich wraps at its own width


def with_dana(tmp_path: Path) -> Path:
    """The shipped people.yaml and one more CSM, whom no vendor knows."""
    doc = yaml.safe_load(SHIPPED_PEOPLE.read_text(encoding="utf-8"))
    doc["people"].append(
        {"id": "csm-20", "name": "Dana Ruiz", "role": "csm", "team": "growth",
         "manager": "mgr-02", "email": "dana.ruiz@example.com"}
    )  # fmt: skip
    path = tmp_path / "people.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def test_the_shipped_files_resolve_everyone_in_people_yaml(
    vendors: Vendors, tmp_path: Path
) -> None:
    code, said = check(vendors, tmp_path)
    assert code == 0, said
    for name in TASK_VENDORS:
        # csm-01 and csm-02 by crm_ids, the other 18 by their e-mail at the vendor
        assert (
            f"{name} owners: resolved 20 of 20 people in people.yaml "
            "(2 by crm_ids in people.yaml; 18 by e-mail looked up)" in said
        ), said
    assert "cannot be resolved" not in said


def test_the_shipped_crm_ids_are_the_ids_the_vendors_hold_for_those_emails(
    vendors: Vendors, tmp_path: Path
) -> None:
    code, said = check(vendors, tmp_path, SHIPPED_PEOPLE, "--owners")
    assert code == 0, said
    for name in TASK_VENDORS:
        for person, who in (("csm-01", "Priya Raman"), ("csm-02", "Tom Becker")):
            user = shipped_user_id(person, name)
            assert f"{person} ({who}): {user} (crm_ids in people.yaml)" in said
        user = shipped_user_id("csm-07", name)
        assert f"csm-07 (Sofia Rossi): {user} (e-mail looked up)" in said


def test_someone_no_vendor_knows_is_named_and_fails_the_check(
    vendors: Vendors, tmp_path: Path
) -> None:
    code, said = check(vendors, tmp_path, with_dana(tmp_path))
    assert code == 1
    for name, vendor in (("salesforce", "Salesforce"), ("zendesk", "Zendesk"),
                         ("hubspot", "HubSpot")):  # fmt: skip
        assert f"{name} owners: resolved 20 of 21 people in people.yaml" in said
        assert (
            f"csm-20 (Dana Ruiz) cannot be resolved: no {vendor} user has the e-mail "
            "dana.ruiz@example.com" in said
        )
    assert said.count("[FAILED] their tasks would be dead letters") == 3


@pytest.mark.parametrize(
    ("fallback", "code", "told"),
    [
        ("ops-01", 0, "their tasks go to the fallback owner, CS Ops on call"),
        (
            "nobody-here",
            1,
            "[FAILED] and the fallback owner cannot take them: fallback_owner 'nobody-here' "
            "is neither a person in people.yaml nor a",
        ),
    ],
)
def test_a_fallback_owner_passes_the_check_when_it_resolves(
    vendors: Vendors, tmp_path: Path, fallback: str, code: int, told: str
) -> None:
    exit_code, said = check(vendors, tmp_path, with_dana(tmp_path), fallback_owner=fallback)
    assert exit_code == code, said
    assert said.count(told) == 3, said
    assert said.count("csm-20 (Dana Ruiz) cannot be resolved") == 3
