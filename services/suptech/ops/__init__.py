"""``suptech ops``: what an SRE asks of a running suptech (health, lag, topics, dead letters).

Read-only except ``topics --create`` and ``deadletters --replay``. It talks to the services the
way anything else does, through Kafka and the ``grpc.health.v1`` contract, and imports no
service's package.
"""
