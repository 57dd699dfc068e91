"""storecast: edge-AI demand forecasting for retail chains."""

__version__ = "0.1.0"
