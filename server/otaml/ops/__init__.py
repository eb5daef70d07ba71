"""Operations: the audit log, /metrics, webhooks and housekeeping."""
