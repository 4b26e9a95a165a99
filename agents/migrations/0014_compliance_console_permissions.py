"""The Compliance group reads the whole console: agents, versions, runs and steps, prompts, triggers,
notifications, variables (names), connectors, billing and staff accesses (view permissions only)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

CONSOLE = {
    "agents": ["agent", "agentversion", "run", "steprun", "prompt", "promptversion", "promptlabel",
               "promptlabelmove", "trigger", "triggerevent", "notificationchannel", "notification",
               "notificationdelivery", "variable"],  # fmt: skip
    "connectors": ["connector", "tenantkey"],
    "billing": ["subscription", "usagecounter", "meterreport", "stripeevent"],
    "tenants": ["staffaccess"],
}


def forward(apps, schema_editor):
    for label in CONSOLE:
        config = apps.get_app_config(label)
        config.models_module = True
        create_permissions(config, apps=apps, verbosity=0)
        config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name="Compliance")
    for label, models in CONSOLE.items():
        group.permissions.add(
            *Permission.objects.filter(
                content_type__app_label=label, codename__in=[f"view_{model}" for model in models]
            )
        )


def reverse(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group = Group.objects.filter(name="Compliance").first()
    if group is None:
        return
    for label, models in CONSOLE.items():
        group.permissions.remove(
            *Permission.objects.filter(
                content_type__app_label=label, codename__in=[f"view_{model}" for model in models]
            )
        )


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0013_run_trigger_mcp"),
        ("tenants", "0006_staff_access"),
        ("connectors", "0004_connector_catalogue"),
        ("billing", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(forward, reverse)]
