"""dsm: an experiment runner for score matching and the autoencoders that learn scores.

The package imports nothing heavy at the top level so that ``dsm --help`` and ``dsm runs``
stay instant; JAX is imported by the modules that need it.
"""

__version__ = "0.1.0"
