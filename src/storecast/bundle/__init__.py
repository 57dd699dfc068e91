"""Model bundles: the deterministic tar that carries a model to devices.

A bundle holds ``model.pt`` (the training checkpoint), ``model.onnx`` (what devices run)
and ``metadata.json`` (``BundleMetadata``: identity, lineage, metrics, feature spec,
input/output schema and the sha256 and size of every other member). Same inputs, same
bytes, same digest.

Reading and verifying a bundle needs neither torch nor onnx, so devices and the registry
use this package as is; building one (``storecast.bundle.packaging``) needs torch.
"""

from storecast.bundle.archive import BundleError, Limits, read_members
from storecast.bundle.metadata import BUNDLE_FORMAT, BundleMetadata, MemberInfo
from storecast.bundle.verify import VerifiedBundle, safe_extract, verify_bundle

__all__ = [
    "BUNDLE_FORMAT",
    "BundleError",
    "BundleMetadata",
    "Limits",
    "MemberInfo",
    "VerifiedBundle",
    "read_members",
    "safe_extract",
    "verify_bundle",
]
