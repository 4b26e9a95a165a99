"""What connectors needs from the apps above it, registered from their ``AppConfig.ready()``.

- **Secret holders**: every model that stores values encrypted under a tenant's data key (connector
  secrets here; trigger signing secrets and notification-channel secrets in agents). Replacing a
  tenant's data key re-encrypts everything registered, so no secret is left under a retired key.
- **Connector users**: who uses a connector (agents whose published version names it), so a connector
  in use is not deleted.
- **The LLM probe**: the Test button of an LLM provider connector makes one small call through the LLM
  gateway, which lives in agents.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Reseal = Callable[[Any, str, str], str]
"""(owner id, field, ciphertext under the old data key) -> ciphertext under the new data key."""


@dataclass(frozen=True)
class SecretHolder:
    """One kind of row holding encrypted values; ``rekey`` re-encrypts a tenant's rows with ``reseal``
    (inside the caller's transaction, rows locked) and returns how many values it re-encrypted."""

    name: str
    rekey: Callable[[Any, Reseal], int]


_holders: dict[str, SecretHolder] = {}
_user_finders: list[Callable[[Any], list[str]]] = []
_llm_probe: list[Callable[..., dict[str, Any]]] = []


def secret_holder_register(holder: SecretHolder) -> None:
    _holders[holder.name] = holder


def secret_holders() -> list[SecretHolder]:
    return list(_holders.values())


def connector_users_register(finder: Callable[[Any], list[str]]) -> None:
    """``finder(connector)`` names what uses the connector."""
    if finder not in _user_finders:
        _user_finders.append(finder)


def connector_user_finders() -> list[Callable[[Any], list[str]]]:
    return list(_user_finders)


def llm_probe_register(probe: Callable[..., dict[str, Any]]) -> None:
    """``probe(model=, credentials=)`` makes one tiny call and says how it went (``{"ok", "detail"}``)."""
    _llm_probe[:] = [probe]


def llm_probe() -> Callable[..., dict[str, Any]] | None:
    return _llm_probe[0] if _llm_probe else None
