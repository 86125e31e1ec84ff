"""A worked example adapter: resilience for the (fictional) Acme Mail HTTP API."""
