"""What the services share: configuration helpers, topic declarations, Kafka and gRPC set-up."""
