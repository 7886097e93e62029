"""The log-subscriber service: judgement events from Pub/Sub (push or pull) into the judgement-log table."""
