"""Real time: stream transport, consumer, online feature store and serving (issue 5)."""
