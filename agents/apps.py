from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"
    verbose_name = "Agents"

    def ready(self) -> None:
        """Tells the lower apps what of agents they act on (they never import agents)."""
        from agents.llm.gateway import llm_probe
        from agents.notifications.services import channel_secrets_rekey, usage_alert_notify
        from agents.runs.services import runs_prune, runs_running_count, runs_tenant_ids
        from agents.triggers.models import Trigger
        from agents.triggers.services import (
            trigger_events_prune,
            trigger_events_tenant_ids,
            trigger_secrets_rekey,
            triggers_pause_for_plan,
        )
        from agents.workflows.models import Agent
        from agents.workflows.services import agents_using_connector
        from billing import registry as billing
        from billing.plans import Metric
        from connectors import registry as connectors
        from tenants.audit import audited_modules_register

        audited_modules_register(
            "agents.workflows.services",
            "agents.workflows.variables",
            "agents.prompts.services",
            "agents.notifications.services",
            "agents.runs.services",
            "agents.triggers.services",
            "agents.llm.prices",
            "agents.ecosystem.bundles",
            "agents.compliance.subjects",
        )

        billing.count_register(
            Metric.AGENTS, lambda t: Agent.objects.filter(tenant_id=t, archived_at__isnull=True).count()
        )
        billing.count_register(Metric.TRIGGERS, lambda t: Trigger.objects.filter(tenant_id=t).count())
        billing.count_register(Metric.CONCURRENT_RUNS, runs_running_count)
        billing.pruner_register(billing.Pruner("runs", runs_tenant_ids, runs_prune))
        billing.pruner_register(
            billing.Pruner("trigger-events", trigger_events_tenant_ids, trigger_events_prune)
        )
        billing.downgrade_register(triggers_pause_for_plan)
        billing.usage_alert_register(usage_alert_notify)

        connectors.secret_holder_register(connectors.SecretHolder("triggers", trigger_secrets_rekey))
        connectors.secret_holder_register(
            connectors.SecretHolder("notification-channels", channel_secrets_rekey)
        )
        connectors.connector_users_register(agents_using_connector)
        connectors.llm_probe_register(llm_probe)

        from agents.notifications.services import staff_access_notify
        from tenants.staff_access import staff_access_listener_register

        staff_access_listener_register(staff_access_notify)

        from agents.runs.services import runs_in_progress_gauge
        from falcon import metrics

        metrics.gauge_source(runs_in_progress_gauge)

        # A worker imports LiteLLM once at start, not during the first run that calls a model.
        from celery.signals import worker_init

        from agents.llm.gateway import warm_up

        worker_init.connect(warm_up, weak=False)

        # SIGTERM: in-flight steps finish, runs go back to the queue at their next step boundary, and
        # whatever is still in flight after the grace period is handed back too.
        from celery.signals import worker_shutting_down as shutting_down

        from agents.runs.execution import worker_shutting_down

        shutting_down.connect(worker_shutting_down, weak=False)

        # A web process too (it executes synchronous webhooks' short runs), in the background.
        import threading

        from falcon.signals import web_process_ready

        def warm_up_web(**_: object) -> None:
            threading.Thread(target=warm_up, name="falcon-warm-up", daemon=True).start()

        web_process_ready.connect(warm_up_web, weak=False)
