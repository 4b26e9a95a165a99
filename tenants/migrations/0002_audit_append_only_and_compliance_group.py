"""The audit table refuses UPDATE and DELETE in the database itself; the Compliance group can read."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

PG_FORWARD = """
CREATE OR REPLACE FUNCTION falcon_audit_event_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'tenants_auditevent is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER tenants_auditevent_append_only
    BEFORE UPDATE OR DELETE ON tenants_auditevent
    FOR EACH ROW EXECUTE FUNCTION falcon_audit_event_append_only();
"""
PG_REVERSE = """
DROP TRIGGER IF EXISTS tenants_auditevent_append_only ON tenants_auditevent;
DROP FUNCTION IF EXISTS falcon_audit_event_append_only();
"""
SQLITE_FORWARD = [
    """CREATE TRIGGER tenants_auditevent_no_update BEFORE UPDATE ON tenants_auditevent
       BEGIN SELECT RAISE(ABORT, 'tenants_auditevent is append-only: UPDATE refused'); END;""",
    """CREATE TRIGGER tenants_auditevent_no_delete BEFORE DELETE ON tenants_auditevent
       BEGIN SELECT RAISE(ABORT, 'tenants_auditevent is append-only: DELETE refused'); END;""",
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS tenants_auditevent_no_update;",
    "DROP TRIGGER IF EXISTS tenants_auditevent_no_delete;",
]

COMPLIANCE_VIEW = ["auditevent", "tenant", "membership", "invitation", "apikey"]


def append_only_forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_FORWARD, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_FORWARD:
            schema_editor.execute(statement)


def append_only_reverse(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_REVERSE, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_REVERSE:
            schema_editor.execute(statement)


def compliance_group_forward(apps, schema_editor):
    # Permissions are normally created after all migrations; this group needs them now.
    tenants_config = apps.get_app_config("tenants")
    tenants_config.models_module = True
    create_permissions(tenants_config, apps=apps, verbosity=0)
    tenants_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name="Compliance")
    group.permissions.set(
        Permission.objects.filter(
            content_type__app_label="tenants", codename__in=[f"view_{model}" for model in COMPLIANCE_VIEW]
        )
    )


def compliance_group_reverse(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name="Compliance").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("tenants", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(append_only_forward, append_only_reverse),
        migrations.RunPython(compliance_group_forward, compliance_group_reverse),
    ]
