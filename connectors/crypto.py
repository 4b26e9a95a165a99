"""Envelope encryption of connector secrets (AES-256-GCM, from ``cryptography``).

Master keys come from ``FALCON_ENCRYPTION_KEYS`` (first encrypts, all decrypt). Each tenant has its
own random data key, stored wrapped by a master key. Secret values are encrypted with the tenant's
data key, bound by associated data to tenant, connector and field: a ciphertext copied to another
row does not decrypt. Keys are never derived from ``SECRET_KEY``.

Stored form (base64url text): ``0x01 | len(key id) | key id | 12-byte nonce | ciphertext+tag``.
"""

from __future__ import annotations

import base64
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from connectors import registry
from connectors.errors import DecryptionError
from connectors.models import TenantKey
from falcon import logs
from tenants.audit import Actor, audit_record

FORMAT_VERSION = 1
NONCE_BYTES = 12


def _master_keys() -> dict[str, bytes]:
    return dict(settings.FALCON_ENCRYPTION_KEYS)


def active_master_key_id() -> str:
    return str(settings.FALCON_ENCRYPTION_KEYS[0][0])


def _seal(key_id: str, key: bytes, plaintext: bytes, aad: bytes) -> str:
    nonce = os.urandom(NONCE_BYTES)
    kid = key_id.encode()
    blob = bytes([FORMAT_VERSION, len(kid)]) + kid + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)
    return base64.urlsafe_b64encode(blob).decode()


def _parse(token: str) -> tuple[str, bytes, bytes]:
    try:
        blob = base64.urlsafe_b64decode(token.encode())
    except (ValueError, TypeError) as exc:
        raise DecryptionError("not a Falcon ciphertext") from exc
    if len(blob) < 2 or blob[0] != FORMAT_VERSION:
        raise DecryptionError("unknown ciphertext format version")
    kid_len = blob[1]
    kid = blob[2 : 2 + kid_len].decode(errors="replace")
    rest = blob[2 + kid_len :]
    if len(rest) < NONCE_BYTES + 16:
        raise DecryptionError("ciphertext too short")
    return kid, rest[:NONCE_BYTES], rest[NONCE_BYTES:]


def key_id_of(token: str) -> str:
    return _parse(token)[0]


def _open(token: str, keys: dict[str, bytes], aad: bytes) -> bytes:
    kid, nonce, sealed = _parse(token)
    if kid not in keys:
        raise DecryptionError(f"unknown key id {kid!r}")
    try:
        return AESGCM(keys[kid]).decrypt(nonce, sealed, aad)
    except InvalidTag as exc:
        raise DecryptionError("ciphertext does not authenticate (tampered, or bound to another row)") from exc


def _datakey_aad(tenant_id: Any) -> bytes:
    return f"falcon:datakey:v1:{tenant_id}".encode()


def _secret_aad(tenant_id: Any, connector_id: Any, field: str) -> bytes:
    return f"falcon:secret:v1:{tenant_id}:{connector_id}:{field}".encode()


def wrap_data_key(tenant_id: Any, data_key: bytes) -> tuple[str, str]:
    """(master key id, wrapped data key) under the active master key."""
    kid = active_master_key_id()
    return kid, _seal(kid, _master_keys()[kid], data_key, _datakey_aad(tenant_id))


def unwrap_data_key(tenant_id: Any, wrapped: str) -> bytes:
    return _open(wrapped, _master_keys(), _datakey_aad(tenant_id))


def tenant_data_key(tenant_id: Any) -> tuple[int, bytes]:
    """(generation, key) of the tenant's data key, created on first use."""
    row = TenantKey.objects.filter(tenant_id=tenant_id).first()
    if row is None:
        with transaction.atomic():
            kid, wrapped = wrap_data_key(tenant_id, AESGCM.generate_key(bit_length=256))
            TenantKey.objects.get_or_create(
                tenant_id=tenant_id, defaults={"master_key_id": kid, "wrapped": wrapped}
            )
        row = TenantKey.objects.get(tenant_id=tenant_id)
    return row.generation, unwrap_data_key(tenant_id, row.wrapped)


def secret_encrypt(
    *,
    tenant_id: Any,
    connector_id: Any,
    field: str,
    plaintext: str,
    data_key: tuple[int, bytes] | None = None,
) -> str:
    generation, key = data_key or tenant_data_key(tenant_id)
    logs.secret_seen(plaintext)
    return _seal(f"dk{generation}", key, plaintext.encode(), _secret_aad(tenant_id, connector_id, field))


def _previous_key(tenant_id: Any, generation: int) -> dict[str, bytes]:
    """The generation before the current one, if kept: a value read from the database just before a
    rekey committed still decrypts after it."""
    rows = TenantKey.objects.filter(tenant_id=tenant_id, generation=generation)
    previous = rows.values_list("previous_wrapped", flat=True).first()
    return {f"dk{generation - 1}": unwrap_data_key(tenant_id, previous)} if previous else {}


def decryption_keys(tenant_id: Any) -> dict[str, bytes]:
    """Every live generation of the tenant's data key, by key id: the current one and the one before."""
    generation, key = tenant_data_key(tenant_id)
    return {f"dk{generation}": key, **_previous_key(tenant_id, generation)}


def secret_decrypt(
    *,
    tenant_id: Any,
    connector_id: Any,
    field: str,
    token: str,
    data_key: tuple[int, bytes] | None = None,
    keys: dict[str, bytes] | None = None,
) -> str:
    """Decrypts with ``data_key`` alone when given (a rotation), else any live generation (``keys``,
    or the tenant's looked up now)."""
    aad = _secret_aad(tenant_id, connector_id, field)
    if data_key is not None:
        keys = {f"dk{data_key[0]}": data_key[1]}
    elif keys is None:
        generation, key = tenant_data_key(tenant_id)
        keys = {f"dk{generation}": key}
        if key_id_of(token) not in keys:  # read just before a rekey: the previous generation
            keys = {**keys, **_previous_key(tenant_id, generation)}
    plaintext = _open(token, keys, aad).decode()
    logs.secret_seen(plaintext)  # never in a log line, whatever code handles it next
    return plaintext


def data_key_rewrap(tenant_id: Any) -> bool:
    """Re-wraps one tenant's data key under the active master key; False if it already was."""
    with transaction.atomic():
        row = TenantKey.objects.select_for_update().filter(tenant_id=tenant_id).first()
        if row is None or row.master_key_id == active_master_key_id():
            return False
        kid, wrapped = wrap_data_key(tenant_id, unwrap_data_key(tenant_id, row.wrapped))
        if row.previous_wrapped:
            _, row.previous_wrapped = wrap_data_key(
                tenant_id, unwrap_data_key(tenant_id, row.previous_wrapped)
            )
        row.master_key_id, row.wrapped, row.rotated_at = kid, wrapped, timezone.now()
        row.save(update_fields=["master_key_id", "wrapped", "previous_wrapped", "rotated_at"])
    return True


def data_key_replace(tenant_id: Any) -> int:
    """A new data key for the tenant and every registered secret re-encrypted under it, in one
    transaction: the old key and the new never both hold live secrets after it commits."""
    with transaction.atomic():
        row = TenantKey.objects.select_for_update().filter(tenant_id=tenant_id).first()
        if row is None:
            return 0
        old = (row.generation, unwrap_data_key(tenant_id, row.wrapped))
        new = (row.generation + 1, AESGCM.generate_key(bit_length=256))

        def reseal(owner_id: Any, field: str, token: str) -> str:
            plaintext = secret_decrypt(
                tenant_id=tenant_id, connector_id=owner_id, field=field, token=token, data_key=old
            )
            return secret_encrypt(
                tenant_id=tenant_id, connector_id=owner_id, field=field, plaintext=plaintext, data_key=new
            )

        count = sum(holder.rekey(tenant_id, reseal) for holder in registry.secret_holders())
        kid, wrapped = wrap_data_key(tenant_id, new[1])
        _, row.previous_wrapped = wrap_data_key(tenant_id, old[1])
        row.generation, row.master_key_id, row.wrapped, row.rotated_at = new[0], kid, wrapped, timezone.now()
        row.save(update_fields=["generation", "master_key_id", "wrapped", "previous_wrapped", "rotated_at"])
        audit_record(
            tenant=tenant_id,
            actor=Actor.system("cli:encryption_rotate"),
            action="tenant.data_key_replaced",
            target_type="tenant",
            target_id=tenant_id,
            after={"generation": new[0], "master_key_id": kid, "values_reencrypted": count},
        )
    return count
