"""Alert service: turns findings into alerts and serves them to supervisors."""
