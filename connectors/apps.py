from django.apps import AppConfig


class ConnectorsConfig(AppConfig):
    name = "connectors"
    verbose_name = "Connectors"

    def ready(self) -> None:
        from connectors import netguard, registry
        from connectors.services import connector_secrets_rekey
        from tenants.audit import audited_modules_register

        audited_modules_register("connectors.services", "connectors.crypto")

        netguard.install()
        registry.secret_holder_register(registry.SecretHolder("connectors", connector_secrets_rekey))
