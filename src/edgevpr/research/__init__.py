"""Research code that plugs into the deploy core: mixed precision by genetic search and the
layer ranking behind ``--keep-float``. The deploy core (``edgevpr.quantize``) never imports
it; importing this package registers ``mixed`` in ``quantize.precisions.PRECISIONS`` and the
``sensitivity`` chooser in ``FLOAT_LAYER_CHOOSERS``. README.md beside this file lists the modules."""

from edgevpr.research import keep_float, mixed_export  # noqa: F401  (registration)
