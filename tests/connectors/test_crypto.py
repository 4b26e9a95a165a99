"""Envelope encryption: round trip, binding to tenant/connector/field, tampering, rotation."""

from __future__ import annotations

import base64
from io import StringIO

import pytest
from django.core.management import call_command

from connectors import crypto
from connectors.models import Connector, TenantKey
from connectors.services import connector_create, connector_resolve
from tenants.audit import Actor

pytestmark = pytest.mark.django_db
SYSTEM = Actor.system("tests")
KEY_A = "k1:" + base64.b64encode(b"A" * 32).decode()
KEY_B = "k2:" + base64.b64encode(b"B" * 32).decode()


def _keys(settings, *items: str) -> None:
    settings.FALCON_ENCRYPTION_KEYS = [(i.split(":")[0], base64.b64decode(i.split(":")[1])) for i in items]


def _connector(tenant, name: str = "crm", token: str = "tok-abcdefghijklmnop") -> Connector:
    return connector_create(
        tenant=tenant,
        name=name,
        kind="http",
        actor=SYSTEM,
        created_by=None,
        config={"base_url": "https://api.example.com", "auth": "bearer"},
        secrets={"token": token},
    )


def test_round_trip_and_nothing_in_clear(world, settings):
    _keys(settings, KEY_A)
    connector = _connector(world.tenant_a)
    stored = Connector.objects.get(pk=connector.pk)
    assert "tok-abcdefghijklmnop" not in str(stored.secrets)
    assert crypto.key_id_of(stored.secrets["token"]) == "dk1"
    assert TenantKey.objects.get(tenant=world.tenant_a).master_key_id == "k1"
    assert connector_resolve(stored).secrets == {"token": "tok-abcdefghijklmnop"}


def test_ciphertext_is_bound_to_tenant_connector_and_field(world, settings):
    _keys(settings, KEY_A)
    a = _connector(world.tenant_a)
    other = _connector(world.tenant_a, name="other", token="tok-other-0123456789")
    b = _connector(world.tenant_b)
    token = a.secrets["token"]
    for tenant_id, connector_id, field in [
        (world.tenant_b.pk, b.pk, "token"),
        (world.tenant_a.pk, other.pk, "token"),
        (world.tenant_a.pk, a.pk, "password"),
    ]:
        with pytest.raises(crypto.DecryptionError):
            crypto.secret_decrypt(tenant_id=tenant_id, connector_id=connector_id, field=field, token=token)


def test_tampered_and_unknown_key_ciphertexts_are_refused(world, settings):
    _keys(settings, KEY_A)
    a = _connector(world.tenant_a)
    raw = bytearray(base64.urlsafe_b64decode(a.secrets["token"]))
    raw[-1] ^= 1
    with pytest.raises(crypto.DecryptionError, match="does not authenticate"):
        crypto.secret_decrypt(
            tenant_id=world.tenant_a.pk,
            connector_id=a.pk,
            field="token",
            token=base64.urlsafe_b64encode(bytes(raw)).decode(),
        )
    wrapped = TenantKey.objects.get(tenant=world.tenant_a).wrapped
    _keys(settings, KEY_B)
    with pytest.raises(crypto.DecryptionError, match="unknown key id 'k1'"):
        crypto.unwrap_data_key(world.tenant_a.pk, wrapped)
    with pytest.raises(crypto.DecryptionError):
        crypto.secret_decrypt(
            tenant_id=world.tenant_a.pk, connector_id=a.pk, field="token", token="garbage!!"
        )


def test_rotation_with_live_reads_then_old_key_removed(world, settings):
    _keys(settings, KEY_A)
    a = _connector(world.tenant_a)
    b = _connector(world.tenant_b, token="tok-bbbbbbbbbbbbbbbb")
    _keys(settings, KEY_B, KEY_A)  # the new key first; the old one still decrypts
    assert connector_resolve(Connector.objects.get(pk=a.pk)).secrets["token"] == "tok-abcdefghijklmnop"
    status = StringIO()
    call_command("encryption_status", stdout=status)
    assert "k1: 2 data key(s) [configured]" in status.getvalue()
    # Rotate one tenant, read in between (the service keeps running), then the rest.
    assert crypto.data_key_rewrap(world.tenant_a.pk) is True
    assert connector_resolve(Connector.objects.get(pk=a.pk)).secrets["token"] == "tok-abcdefghijklmnop"
    out = StringIO()
    call_command("encryption_rotate", stdout=out)
    assert "Re-wrapped 1 data key(s)" in out.getvalue()
    call_command("encryption_rotate", stdout=out)  # resumable: nothing left
    assert "Re-wrapped 0 data key(s)" in out.getvalue()
    status = StringIO()
    call_command("encryption_status", stdout=status)
    assert "k2: 2 data key(s) [active]" in status.getvalue()
    assert "safe to remove" in status.getvalue()
    _keys(settings, KEY_B)  # the old master key is gone
    assert connector_resolve(Connector.objects.get(pk=a.pk)).secrets["token"] == "tok-abcdefghijklmnop"
    assert connector_resolve(Connector.objects.get(pk=b.pk)).secrets["token"] == "tok-bbbbbbbbbbbbbbbb"


def test_rekey_data_replaces_data_keys_and_reencrypts(world, settings):
    _keys(settings, KEY_A)
    a = _connector(world.tenant_a)
    before = Connector.objects.get(pk=a.pk).secrets["token"]
    call_command("encryption_rotate", "--rekey-data", stdout=StringIO())
    after = Connector.objects.get(pk=a.pk)
    assert after.secrets["token"] != before
    assert crypto.key_id_of(after.secrets["token"]) == "dk2"
    assert connector_resolve(after).secrets["token"] == "tok-abcdefghijklmnop"


def test_a_value_read_just_before_a_rekey_still_decrypts_after_it(world, settings):
    """Decryption accepts every live generation: the current data key and the one before it."""
    _keys(settings, KEY_A)
    a = _connector(world.tenant_a)
    read_before = Connector.objects.get(pk=a.pk)  # an in-flight request holds the old ciphertext
    call_command("encryption_rotate", "--rekey-data", stdout=StringIO())
    assert crypto.key_id_of(read_before.secrets["token"]) == "dk1"
    assert connector_resolve(read_before).secrets["token"] == "tok-abcdefghijklmnop"
    call_command("encryption_rotate", "--rekey-data", stdout=StringIO())
    with pytest.raises(crypto.DecryptionError):  # two generations back: retired
        connector_resolve(read_before)
