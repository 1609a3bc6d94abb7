"""The policy file contract: load (with line numbers), model, and merge into per-rule settings."""

from .load import load_policy, load_site, load_site_layers, parse_layer
from .model import AutoBinds, Bind, Floor, Layer, Origin, Policy, Settings, Site
from .resolve import check_presets, layers_for, merge

__all__ = ["AutoBinds", "Bind", "Floor", "Layer", "Origin", "Policy", "Settings", "check_presets", "layers_for",
           "load_policy", "load_site", "load_site_layers", "merge", "parse_layer", "Site"]
