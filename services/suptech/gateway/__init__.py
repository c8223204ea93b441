"""The ingest gateway: institutions' telemetry in over gRPC, validated, out to Kafka."""
