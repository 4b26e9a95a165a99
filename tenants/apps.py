from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = "Tenants"

    def ready(self) -> None:
        from tenants import schema  # noqa: F401 - registers the OpenAPI authentication extension
        from tenants.audit import audited_modules_register

        audited_modules_register(
            "tenants.services",
            "tenants.object_access",
            "tenants.audit",
            "tenants.staff_access",
            "tenants.operator",
        )
