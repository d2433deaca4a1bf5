"""The Optuna storage: open.py opens it (one opener, resume check, --fresh, URL redaction); records.py is the
only module that names a trial's user-attribute keys (every writer, and the read view everyone else uses)."""
