"""Getting events to streams: admission, subscriptions (the hot path), resume planning,
the process's fan-out, cursors, and the open stream's life. No HTTP framework here."""
