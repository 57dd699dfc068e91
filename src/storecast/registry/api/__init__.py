"""The registry's HTTP API: one blueprint per resource."""
