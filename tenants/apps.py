from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = "Tenants"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from tenants import schema  # noqa: F401 - registers the OpenAPI authentication extension
        from tenants.staff_access import compliance_group_ensure

        # After every app's permissions exist (post_migrate of the last app runs after theirs).
        post_migrate.connect(compliance_group_ensure, dispatch_uid="falcon-compliance-group")
        from tenants.audit import audited_modules_register

        audited_modules_register(
            "tenants.services",
            "tenants.object_access",
            "tenants.audit",
            "tenants.staff_access",
            "tenants.operator",
        )
