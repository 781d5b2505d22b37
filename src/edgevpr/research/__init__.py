"""Research code that plugs into the deploy core: mixed precision by genetic search and the
layer ranking behind ``--keep-float``. The deploy core (``edgevpr.quantize``) never imports
it, and importing it registers nothing: ``register`` (the ``edgevpr.plugins`` entry point in
pyproject.toml, which the registries call when asked for a name they lack) adds ``mixed`` to
``quantize.precisions.PRECISIONS`` and ``sensitivity`` to ``FLOAT_LAYER_CHOOSERS``. README.md
beside this file lists the modules."""


def register() -> None:
    """Register mixed precision and the ``--keep-float`` ranking (once; later calls do nothing)."""
    from edgevpr.quantize.precisions import FLOAT_LAYER_CHOOSERS, PRECISIONS
    from edgevpr.research.keep_float import layers_kept_float
    from edgevpr.research.mixed_export import MixedPrecision

    if "mixed" not in PRECISIONS:
        PRECISIONS.register("mixed")(MixedPrecision)
    if "sensitivity" not in FLOAT_LAYER_CHOOSERS:
        FLOAT_LAYER_CHOOSERS.register("sensitivity")(layers_kept_float)
