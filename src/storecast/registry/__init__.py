"""The model registry: models, versions, aliases, devices, deployments, TUF, audit.

``create_app(config)`` builds the registry as its own Flask service; ``storecast.cloud``
combines it with the other cloud services. See docs/registry.md.
"""

from storecast.registry.app import create_app
from storecast.registry.config import RegistryConfig
from storecast.registry.setup import init_registry

__all__ = ["RegistryConfig", "create_app", "init_registry"]
