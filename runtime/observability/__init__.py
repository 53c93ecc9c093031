"""What an operator sees: correlation ids, OpenTelemetry spans, and the log formats."""
