"""Where Django finds the app's models: each lives in its domain package (the app label stays ``agents``)."""

from agents.generator.models import Generation
from agents.llm.models import ModelPrice
from agents.notifications.models import Notification, NotificationChannel, NotificationDelivery
from agents.prompts.models import Prompt, PromptLabel, PromptLabelMove, PromptVersion
from agents.runs.models import Run, StepRun
from agents.triggers.models import Trigger, TriggerEvent
from agents.workflows.models import Agent, AgentVersion, AgentWatcher, Variable

__all__ = [
    "Agent",
    "AgentVersion",
    "AgentWatcher",
    "Generation",
    "ModelPrice",
    "Notification",
    "NotificationChannel",
    "NotificationDelivery",
    "Prompt",
    "PromptLabel",
    "PromptLabelMove",
    "PromptVersion",
    "Run",
    "StepRun",
    "Trigger",
    "TriggerEvent",
    "Variable",
]
