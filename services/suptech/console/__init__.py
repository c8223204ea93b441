"""The regulator web console: a small HTTP server that reads only the alert service's gRPC API."""
