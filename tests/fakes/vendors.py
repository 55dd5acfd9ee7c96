"""Every fake vendor on one trustme CA, with the credentials they accept and the
connectors/*.yaml a CS ops team would write for them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trustme
import yaml

from fakes.hooks import FakeHooks
from fakes.hubspot import FakeHubSpot
from fakes.salesforce import FakeSalesforce
from fakes.server import FakeServer
from fakes.zendesk import FakeZendesk

SF_KEY, SF_ACCOUNT = "Csauto_Key__c", "Csauto_Account_Id__c"
SHIPPED_PEOPLE = Path(__file__).resolve().parents[2] / "people.yaml"


def user_ids(person_id: str, position: int) -> dict[str, str]:
    """The ids the fakes give a person of the shipped people.yaml: csm-NN is number NN,
    anyone else 100 + their place in the file. people.yaml's crm_ids use the same ones."""
    n = int(person_id[4:]) if person_id[:4] == "csm-" else 100 + position
    return {
        "salesforce": f"005{n:012d}AAA",
        "zendesk": str(360000000000 + n),
        "hubspot": str(12345677 + n),
    }


def shipped_user_id(person_id: str, vendor: str) -> str:
    """The id the fakes give `person_id` of the shipped people.yaml at `vendor`."""
    people = yaml.safe_load(SHIPPED_PEOPLE.read_text(encoding="utf-8"))["people"]
    [position] = [i for i, p in enumerate(people) if p["id"] == person_id]
    return user_ids(person_id, position)[vendor]


class Vendors:
    def __init__(self) -> None:
        self.ca = trustme.CA()
        self.salesforce = FakeSalesforce(ca=self.ca)
        self.zendesk = FakeZendesk(ca=self.ca)
        self.hubspot = FakeHubSpot(ca=self.ca)
        self.hooks = FakeHooks(ca=self.ca)
        self.all: tuple[FakeServer, ...] = (
            self.salesforce,
            self.zendesk,
            self.hubspot,
            self.hooks,
        )

    def start(self, accounts: tuple[str, ...]) -> Vendors:
        for fake in self.all:
            fake.start()
        for account_id in accounts:
            self.salesforce.add_account(SF_ACCOUNT, account_id, Name=account_id.title())
            self.zendesk.add_organization(account_id, account_id.title())
            self.hubspot.add_company(account_id, account_id.title())
        self.add_people(SHIPPED_PEOPLE)
        return self

    def add_people(self, path: Path) -> None:
        """A user in each vendor for every person with an e-mail in `path` (the org the
        shipped people.yaml describes), with the ids `user_ids` gives them."""
        people = yaml.safe_load(path.read_text(encoding="utf-8"))["people"]
        for position, person in enumerate(people):
            if not person.get("email"):
                continue
            ids = user_ids(person["id"], position)
            email, name = person["email"], person["name"]
            self.salesforce.add_user(email, name, ids["salesforce"])
            self.zendesk.add_user(email, name, int(ids["zendesk"]))
            self.hubspot.add_owner(email, name, ids["hubspot"])

    def stop(self) -> None:
        for fake in self.all:
            fake.stop()

    def credentials(self) -> dict[str, str]:
        sf, zd, hs = self.salesforce, self.zendesk, self.hubspot
        return {
            "SF_USERNAME": sf.username,
            "SF_PASSWORD": sf.password,
            "SF_CLIENT_ID": sf.client_id,
            "SF_CLIENT_SECRET": sf.client_secret,
            "ZD_EMAIL": zd.email,
            "ZD_TOKEN": zd.token,
            "HUBSPOT_TOKEN": hs.token,
            "SLACK_WEBHOOK_URL": self.hooks.slack_url(),
            "HOOK_SECRET": self.hooks.secret,
        }

    def secrets(self) -> list[str]:
        """Every credential value, and the session tokens Salesforce handed out."""
        values = dict(self.credentials())
        del values["SF_USERNAME"], values["ZD_EMAIL"]  # identities, not credentials
        values["SLACK_WEBHOOK_URL"] = values["SLACK_WEBHOOK_URL"].rsplit("/slack/", 1)[1]
        return [*values.values(), *self.salesforce.tokens]

    def ca_file(self, folder: Path) -> str:
        return self.salesforce.ca_file(folder)

    def write_configs(self, folder: Path, **common: Any) -> Path:
        """connectors/*.yaml pointed at the fakes; `common` (retry, breaker, ...) goes
        into each."""
        folder.mkdir()
        configs: dict[str, dict[str, Any]] = {
            "salesforce": {
                "type": "salesforce",
                "login_url": self.salesforce.url,
                "auth": {
                    "method": "password",
                    "username_env": "SF_USERNAME",
                    "password_env": "SF_PASSWORD",
                    "client_id_env": "SF_CLIENT_ID",
                    "client_secret_env": "SF_CLIENT_SECRET",
                },
                "idempotency_field": SF_KEY,
                "account_field": SF_ACCOUNT,
                "owners": {"csm-01": "0055g00000AbCdEAAV"},
            },
            "zendesk": {
                "type": "zendesk",
                "url": self.zendesk.url,
                "auth": {"email_env": "ZD_EMAIL", "token_env": "ZD_TOKEN"},
                "owners": {"csm-01": 7001},
            },
            "hubspot": {
                "type": "hubspot",
                "url": self.hubspot.url,
                "auth": {"token_env": "HUBSPOT_TOKEN"},
                "owners": {"csm-01": "75001"},
            },
            "slack": {"type": "slack", "webhook_url_env": "SLACK_WEBHOOK_URL"},
            "ops-hook": {
                "type": "webhook",
                "url": f"{self.hooks.url}/hook",
                "secret_env": "HOOK_SECRET",
            },
        }
        for name, config in configs.items():
            doc = {"connector": {"id": name} | config | common}
            (folder / f"{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        return folder
