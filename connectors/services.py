"""Creating, changing, testing and deleting connectors; resolving them (decrypted) for one call."""

from __future__ import annotations

import ipaddress
import time
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from connectors import crypto, registry
from connectors.errors import Blocked, ConnectorError, ConnectorInvalid
from connectors.kinds import KINDS, LLM_PROVIDER_KINDS, Resolved
from connectors.models import Connector, NetworkAllowance
from connectors.netguard import NetPolicy, within_ceiling
from falcon import sql
from falcon.errors import Conflict, InvalidInput
from falcon.redaction import public_error
from tenants import limits
from tenants.audit import Actor, audit_record
from tenants.models import Tenant, User

HINT_MIN_LENGTH = 12


def _hint(value: str) -> str:
    """At most the last four characters, and none of a short secret."""
    return value[-4:] if len(value) >= HINT_MIN_LENGTH else ""


def _audit_view(connector: Connector) -> dict[str, Any]:
    return {
        "name": connector.name,
        "kind": connector.kind,
        "config": connector.config,
        "write_only_fields_set": sorted(connector.secrets),
    }


def _store_secrets(connector: Connector, secrets: dict[str, str | None]) -> None:
    for field, value in secrets.items():
        if value in (None, ""):
            connector.secrets.pop(field, None)
            connector.secret_hints.pop(field, None)
        else:
            connector.secrets[field] = crypto.secret_encrypt(
                tenant_id=connector.tenant_id, connector_id=connector.pk, field=field, plaintext=str(value)
            )
            connector.secret_hints[field] = _hint(str(value))


def _destination_problems(tenant_id: Any, kind: str, config: dict[str, Any]) -> dict[str, list[str]]:
    """A tenant-supplied LLM base URL or MCP server URL is checked against the tenant's network policy
    on save (and again on every call)."""
    field = KINDS[kind].destination_field
    destination = config.get(field) if field else None
    if not destination:
        return {}
    try:
        network_policy(tenant_id).check_url(str(destination))
    except Blocked as exc:
        return {f"config.{field}": [str(exc)]}
    return {}


@transaction.atomic
def connector_create(
    *,
    tenant: Tenant,
    name: str,
    kind: str,
    config: dict[str, Any],
    secrets: dict[str, str],
    actor: Actor,
    created_by: User | None,
) -> Connector:
    kind_class = KINDS.get(kind)
    if kind_class is None:
        raise InvalidInput(f"Unknown kind {kind!r}; see /api/v1/connector-kinds/.", field="kind")
    problems = kind_class.validate(config, secrets) or _destination_problems(tenant.pk, kind, config)
    if problems:
        raise ConnectorInvalid(problems)
    limits.count_check(tenant, "connectors")
    connector = Connector(tenant=tenant, name=name.strip(), kind=kind, config=config, created_by=created_by)
    _store_secrets(connector, dict(secrets))
    try:
        with transaction.atomic():
            connector.save(force_insert=True)
    except IntegrityError as exc:
        raise Conflict(f"A connector named {name!r} exists.", code="name_taken", field="name") from exc
    audit_record(
        tenant=tenant,
        actor=actor,
        action="connector.created",
        target_type="connector",
        target_id=connector.pk,
        after=_audit_view(connector),
    )
    return connector


@transaction.atomic
def connector_update(
    *,
    connector: Connector,
    actor: Actor,
    name: str | None = None,
    config: dict[str, Any] | None = None,
    secrets: dict[str, str | None] | None = None,
) -> Connector:
    """Config keys given replace the old ones; secrets given are replaced (null or "" clears one)."""
    limits.over_limit_check(connector.tenant_id, "connectors")
    connector = Connector.objects.select_for_update().get(pk=connector.pk)
    before = _audit_view(connector)
    merged_config = {**connector.config, **(config or {})}
    kind_class = KINDS[connector.kind]
    # Validated without decrypting: a required secret is satisfied by the stored one.
    secret_view = {field: "set" for field in connector.secrets}
    secret_view.update({k: str(v) for k, v in (secrets or {}).items() if v not in (None, "")})
    for field, value in (secrets or {}).items():
        if value in (None, ""):
            secret_view.pop(field, None)
    problems = kind_class.validate(merged_config, secret_view) or _destination_problems(
        connector.tenant_id, connector.kind, merged_config
    )
    if problems:
        raise ConnectorInvalid(problems)
    if name is not None and name.strip() != connector.name:
        if Connector.objects.filter(tenant_id=connector.tenant_id, name=name.strip()).exists():
            raise Conflict(f"A connector named {name!r} exists.", code="name_taken", field="name")
        connector.name = name.strip()
    connector.config = merged_config
    _store_secrets(connector, dict(secrets or {}))
    connector.updated_at = timezone.now()
    connector.save()
    audit_record(
        tenant=connector.tenant_id,
        actor=actor,
        action="connector.updated",
        target_type="connector",
        target_id=connector.pk,
        before=before,
        after={**_audit_view(connector), "write_only_fields_changed": sorted(secrets or {})},
    )
    return connector


def connector_users(connector: Connector) -> list[str]:
    """What uses this connector (agents whose published version names it), as registered finders say."""
    return sorted({user for finder in registry.connector_user_finders() for user in finder(connector)})


def connector_exists(*, tenant_id: Any, name: str) -> bool:
    return Connector.objects.filter(tenant_id=tenant_id, name=name).exists()


def connector_secrets_rekey(tenant_id: Any, reseal: registry.Reseal) -> int:
    """Re-encrypts every connector secret of a tenant (the data key rotation's walk over connectors)."""
    count = 0
    for connector in Connector.objects.select_for_update().filter(tenant_id=tenant_id):
        connector.secrets = {
            field: reseal(connector.pk, field, token) for field, token in connector.secrets.items()
        }
        connector.save(update_fields=["secrets"])
        count += len(connector.secrets)
    return count


@transaction.atomic
def connector_delete(*, connector: Connector, actor: Actor) -> None:
    connector = Connector.objects.select_for_update().get(pk=connector.pk)
    users = connector_users(connector)
    if users:
        raise Conflict(
            f"Published agents use this connector: {', '.join(users)}. Publish versions without it first.",
            code="connector_in_use",
        )
    audit_record(
        tenant=connector.tenant_id,
        actor=actor,
        action="connector.deleted",
        target_type="connector",
        target_id=connector.pk,
        before=_audit_view(connector),
    )
    connector.delete()


def connector_resolve(connector: Connector) -> Resolved:
    """The connector with its secrets decrypted, for one call. Never store or return the result."""
    keys = crypto.decryption_keys(connector.tenant_id)
    secrets = {
        field: crypto.secret_decrypt(
            tenant_id=connector.tenant_id,
            connector_id=connector.pk,
            field=field,
            token=token,
            keys=keys,
        )
        for field, token in connector.secrets.items()
    }
    return Resolved(
        id=str(connector.pk),
        tenant_id=str(connector.tenant_id),
        name=connector.name,
        kind=connector.kind,
        config=dict(connector.config),
        secrets=secrets,
        policy=network_policy(connector.tenant_id),
    )


# --- the tenant's network allowances (operators only) ----------------------------------------------------


def network_policy(tenant_id: Any) -> NetPolicy:
    """What this tenant's connections may reach: public addresses plus its allowed private networks."""
    cidrs = NetworkAllowance.objects.filter(tenant_id=tenant_id).values_list("cidr", flat=True)
    return NetPolicy(allowed=tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs))


@transaction.atomic
def network_allow(*, tenant: Tenant, cidr: str, reason: str, actor: Actor) -> NetworkAllowance:
    """Lets one tenant reach a private network, inside ``FALCON_ALLOWED_PRIVATE_NETWORKS``."""
    try:
        network = ipaddress.ip_network(cidr.strip(), strict=False)
    except ValueError as exc:
        raise InvalidInput(f"{cidr!r} is not a network (CIDR).", field="cidr") from exc
    if not within_ceiling(network):
        raise InvalidInput(
            f"{network} is not inside FALCON_ALLOWED_PRIVATE_NETWORKS, the most this installation allows.",
            code="outside_platform_allowance",
            field="cidr",
        )
    allowance, created = NetworkAllowance.objects.get_or_create(
        tenant=tenant, cidr=str(network), defaults={"reason": reason[:300]}
    )
    if created:
        audit_record(
            tenant=tenant,
            actor=actor,
            action="network.allowed",
            target_type="network_allowance",
            target_id=allowance.pk,
            after={"cidr": str(network), "reason": reason},
        )
    return allowance


@transaction.atomic
def network_disallow(*, tenant: Tenant, cidr: str, actor: Actor) -> bool:
    try:
        network = str(ipaddress.ip_network(cidr.strip(), strict=False))
    except ValueError as exc:
        raise InvalidInput(f"{cidr!r} is not a network (CIDR).", field="cidr") from exc
    allowance = NetworkAllowance.objects.filter(tenant=tenant, cidr=network).first()
    if allowance is None:
        return False
    audit_record(
        tenant=tenant,
        actor=actor,
        action="network.disallowed",
        target_type="network_allowance",
        target_id=allowance.pk,
        before={"cidr": network, "reason": allowance.reason},
    )
    allowance.delete()
    return True


def connector_find(*, tenant_id: Any, name: str, kinds: tuple[str, ...] | None = None) -> Connector | None:
    queryset = Connector.objects.filter(tenant_id=tenant_id, name=name)
    if kinds:
        queryset = queryset.filter(kind__in=kinds)
    return queryset.first()


def provider_connector(*, tenant_id: Any, provider: str) -> Connector | None:
    """The tenant's default connector for an LLM provider: the only one, or the one marked default."""
    kind = "ollama" if provider == "ollama_chat" else provider
    if kind not in LLM_PROVIDER_KINDS:
        return None
    # Read on every LLM call: a statement written once rather than compiled each time.
    candidates = sql.select_all(
        Connector, "tenant_id = %s AND kind = %s", [sql.param(Connector, "tenant", tenant_id), kind], limit=20
    )
    if len(candidates) == 1:
        return candidates[0]
    marked = [c for c in candidates if c.config.get("default")]
    return marked[0] if len(marked) == 1 else None


def connector_test(*, connector: Connector, actor: Actor) -> dict[str, Any]:
    """Runs the kind's test; the result never contains a secret value."""
    resolved = connector_resolve(connector)
    started = time.monotonic()
    try:
        outcome = KINDS[connector.kind].test(resolved)
        result = {"ok": bool(outcome.get("ok")), "detail": outcome.get("detail", "")}
        if isinstance(outcome.get("catalogue"), dict):
            _catalogue_store(connector, outcome["catalogue"])
            result["catalogue"] = outcome["catalogue"]
        if outcome.get("warnings"):
            result["warnings"] = [str(w) for w in outcome["warnings"]]
    except ConnectorError as exc:
        result = {"ok": False, "detail": exc.message, "code": exc.code}
    except Exception as exc:
        result = {"ok": False, "detail": f"{type(exc).__name__}: {exc}", "code": "test_failed"}
    result["detail"] = public_error(result["detail"], resolved.secret_values())
    result["latency_ms"] = int((time.monotonic() - started) * 1000)
    Connector.objects.filter(pk=connector.pk).update(last_tested_at=timezone.now(), last_test_ok=result["ok"])
    audit_record(
        tenant=connector.tenant_id,
        actor=actor,
        action="connector.tested",
        target_type="connector",
        target_id=connector.pk,
        after={"ok": result["ok"], "code": result.get("code", "")},
    )
    return result


def _catalogue_store(connector: Connector, catalogue: dict[str, Any]) -> None:
    connector.catalogue, connector.catalogue_at = catalogue, timezone.now()
    Connector.objects.filter(pk=connector.pk).update(
        catalogue=connector.catalogue, catalogue_at=connector.catalogue_at
    )


def connector_discover(connector: Connector) -> dict[str, Any] | None:
    """Asks the remote system what it offers (an MCP server's tools) and keeps it as the connector's
    catalogue; a failure is kept too (``{"error", "code"}``), so the page and the API can say why.
    Called after a save, outside its transaction: the remote system may take seconds."""
    kind = KINDS[connector.kind]
    resolved = connector_resolve(connector)
    try:
        catalogue = kind.discover(resolved)
        if catalogue is None:
            return None
    except ConnectorError as exc:
        catalogue = {"error": public_error(exc.message, resolved.secret_values()), "code": exc.code}
    _catalogue_store(connector, catalogue)
    return catalogue
