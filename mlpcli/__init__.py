"""mlpcli: train multilayer perceptrons from YAML configs, on numpy."""

__version__ = "0.1.0"
