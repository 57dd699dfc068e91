"""The edge agent: forecasts a store's demand offline, updates its model safely, reports home.

Runs with the core install only (numpy, onnxruntime, flask, tuf, httpx): never torch,
SQLAlchemy or any cloud module. It talks to the registry and analytics over HTTP.
"""
