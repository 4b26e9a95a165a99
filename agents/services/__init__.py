"""Every state change of agents, versions and runs goes through these services."""
