"""Management plane: gRPC services (tectra.mgmt.v1) and the tectractl CLI."""
