"""Webhook intake: signature checks (``signature``) and ``POST /webhooks/{provider}``
(``routes``), which verifies, enqueues once and answers at once."""
