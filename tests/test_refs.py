from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from mypy import api

from actors.account import Account
from actors.race import Race
from engine.refs import Ref, message_type

ROOT = Path(__file__).resolve().parent.parent


def _recorder() -> tuple[list[tuple], Ref[Account]]:
    sent: list[tuple] = []

    async def send(kind: str, entity_id: str, message: str, body: object) -> str:
        sent.append((kind, entity_id, message, body))
        return "answer"

    return sent, Ref(send, Account, "u1")


async def test_a_typed_ask_sends_the_envelope_of_the_string_ask() -> None:
    sent, account = _recorder()
    assert await account.ask(Account.ids, which="followers") == "answer"
    assert await account.ask(Account.me) == "answer"
    assert sent == [("account", "u1", "ids", {"which": "followers"}), ("account", "u1", "me", None)]


async def test_a_handler_of_another_kind_or_a_positional_field_is_refused() -> None:
    _, account = _recorder()
    with pytest.raises(TypeError, match="account has no handler Race.info"):
        await account.ask(Race.info)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="by name"):
        await account.ask(Account.ids, "followers")
    with pytest.raises(TypeError, match="not a handler"):
        message_type(Account, Account._require)


def test_mypy_rejects_a_wrong_field_name(tmp_path: Path) -> None:
    snippet = tmp_path / "snippet.py"
    snippet.write_text(
        textwrap.dedent(
            """
            from actors.account import Account
            from engine.refs import Ref

            async def ask(account: Ref[Account]) -> list[str]:
                return await account.ask(Account.ids, whihc="followers")
            """
        )
    )
    out, _, status = api.run(["--config-file", str(ROOT / "pyproject.toml"), str(snippet)])
    assert status == 1
    assert 'Unexpected keyword argument "whihc"' in out
