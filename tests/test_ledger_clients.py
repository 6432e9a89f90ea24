"""Clients, their settings and their payment-method mappings."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import Engine

from toporder_sync.core.errors import ConfigurationError, RefusedError
from toporder_sync.core.model import ClientSettings, Territory
from toporder_sync.ledger.clients import (
    INTEGRATION_ID_PREFIX,
    ClientRecord,
    activate_client,
    client_by_integration_id,
    client_settings,
    get_client,
    list_clients,
    list_mappings,
    set_account_override,
    set_mapping,
)
from toporder_sync.ledger.db import session_scope

ACTIVATED_ON = date(2026, 11, 1)


def test_activation_records_every_setting(engine: Engine, now: datetime) -> None:
    with session_scope(engine) as session:
        activated = activate_client(
            session,
            "chez-lulu-2",
            name="Chez Lulu",
            activated_on=ACTIVATED_ON,
            territory="dom",
            timezone="America/Martinique",
            run_hour=7,
            deadline_hour=14,
            now=now,
        )
    with session_scope(engine) as session:
        stored = get_client(session, "chez-lulu-2")
    assert stored == activated
    assert stored == ClientRecord(
        client_id="chez-lulu-2",
        name="Chez Lulu",
        integration_id=stored.integration_id,
        activated_on=ACTIVATED_ON,
        territory=Territory.DOM,
        timezone="America/Martinique",
        run_hour=7,
        deadline_hour=14,
        active=True,
        account_overrides={},
        created_at=now,
    )
    assert stored.created_at.tzinfo is UTC


def test_activation_defaults_to_metropole_paris_at_six(engine: Engine, now: datetime) -> None:
    with session_scope(engine) as session:
        client = activate_client(
            session, "petit-zinc", name="Le Petit Zinc", activated_on=ACTIVATED_ON, now=now
        )
    assert (client.territory, client.timezone, client.run_hour, client.deadline_hour) == (
        Territory.METROPOLE,
        "Europe/Paris",
        6,
        12,
    )


def test_integration_ids_are_unique_and_unguessable(engine: Engine, now: datetime) -> None:
    with session_scope(engine) as session:
        ids = [
            activate_client(
                session, f"client-{n}", name=f"Client {n}", activated_on=ACTIVATED_ON, now=now
            ).integration_id
            for n in range(20)
        ]
    assert len(set(ids)) == 20
    for integration_id in ids:
        assert integration_id.startswith(INTEGRATION_ID_PREFIX)
        # 24 random bytes, base64url: 192 bits that cannot be guessed from the client id.
        assert len(integration_id) == len(INTEGRATION_ID_PREFIX) + 32
    with session_scope(engine) as session:
        found = client_by_integration_id(session, ids[3])
        assert found is not None and found.client_id == "client-3"
        assert client_by_integration_id(session, "tpo_not-issued") is None
        assert [c.client_id for c in list_clients(session)] == sorted(
            f"client-{n}" for n in range(20)
        )


@pytest.mark.parametrize(
    ("client_id", "changes", "field"),
    [
        ("Petit-Zinc", {}, "client_id"),
        ("-petit", {}, "client_id"),
        ("petit zinc", {}, "client_id"),
        ("", {}, "client_id"),
        ("a" * 64, {}, "client_id"),
        ("petit-zinc", {"name": "  "}, "name"),
        ("petit-zinc", {"territory": "guyane"}, "territory"),
        ("petit-zinc", {"timezone": "Paris"}, "timezone"),
        ("petit-zinc", {"timezone": "Europe"}, "timezone"),
        ("petit-zinc", {"run_hour": 24}, "run_hour"),
        ("petit-zinc", {"deadline_hour": -1}, "deadline_hour"),
    ],
)
def test_bad_activation_settings_are_configuration_errors_naming_the_field(
    engine: Engine, now: datetime, client_id: str, changes: dict[str, object], field: str
) -> None:
    settings: dict[str, object] = {"name": "Le Petit Zinc", "activated_on": ACTIVATED_ON}
    settings.update(changes)
    with pytest.raises(ConfigurationError, match=field), session_scope(engine) as session:
        activate_client(session, client_id, now=now, **settings)  # type: ignore[arg-type]
    with session_scope(engine) as session:
        assert list_clients(session) == []


def test_a_client_is_activated_once(engine: Engine, client_id: str, now: datetime) -> None:
    with pytest.raises(ConfigurationError, match="already"), session_scope(engine) as session:
        activate_client(session, client_id, name="Again", activated_on=ACTIVATED_ON, now=now)


def test_an_unknown_client_is_refused(engine: Engine) -> None:
    refused = pytest.raises(RefusedError, match="unknown client 'nobody'")
    with refused, session_scope(engine) as session:
        get_client(session, "nobody")


def test_mappings_are_exact_names_byte_for_byte(
    engine: Engine, client_id: str, now: datetime
) -> None:
    names = {
        "Carte Bancaire": "511500",
        "carte bancaire": "511510",
        "Carte\u00a0Bancaire": "511520",  # a non-breaking space is another name
        "Espèces": "530000",
        "Espe\u0300ces": "530010",  # the same word, decomposed: other bytes, other name
    }
    with session_scope(engine) as session:
        for method, account in names.items():
            set_mapping(session, client_id, method, account, now=now)
    with session_scope(engine) as session:
        assert list_mappings(session, client_id) == names


def test_set_mapping_replaces_the_account_of_that_exact_name(
    engine: Engine, client_id: str, now: datetime
) -> None:
    with session_scope(engine) as session:
        set_mapping(session, client_id, "Swile", "511800", now=now)
        set_mapping(session, client_id, "Swile", "511810", now=now)
        assert list_mappings(session, client_id) == {"Swile": "511810"}


@pytest.mark.parametrize(
    ("method", "account", "message"),
    [
        ("Swile", "706100", "class 4 or 5"),
        ("Swile", "51A800", "not an account number"),
        ("", "511800", "method"),
    ],
)
def test_bad_mappings_are_configuration_errors(
    engine: Engine, client_id: str, now: datetime, method: str, account: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message), session_scope(engine) as session:
        set_mapping(session, client_id, method, account, now=now)


def test_mapping_for_an_unknown_client_is_refused(engine: Engine, now: datetime) -> None:
    with pytest.raises(RefusedError), session_scope(engine) as session:
        set_mapping(session, "nobody", "Swile", "511800", now=now)


def test_client_settings_gather_territory_overrides_and_mappings(
    engine: Engine, client_id: str, now: datetime
) -> None:
    with session_scope(engine) as session:
        set_account_override(session, client_id, "revenue:10", "707100")
        set_account_override(session, client_id, "tips", "467600")
        set_account_override(session, client_id, "tips", "467700")
        set_mapping(session, client_id, "Carte Bancaire", "511500", now=now)
    with session_scope(engine) as session:
        assert client_settings(session, client_id) == ClientSettings(
            client_id=client_id,
            territory=Territory.METROPOLE,
            account_overrides={"revenue:10": "707100", "tips": "467700"},
            mappings={"Carte Bancaire": "511500"},
        )
        assert get_client(session, client_id).account_overrides == {
            "revenue:10": "707100",
            "tips": "467700",
        }


@pytest.mark.parametrize(
    ("key", "account", "message"),
    [
        ("revenue:7", "706070", "account key"),
        ("revenue:10", "411000", "class 7"),
        ("vat:20", "446000", "445"),
        ("cash_shortage", "758000", "class 6"),
        ("gift_cards", "5191", "class 4"),
    ],
)
def test_bad_account_overrides_are_configuration_errors(
    engine: Engine, client_id: str, key: str, account: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message), session_scope(engine) as session:
        set_account_override(session, client_id, key, account)
