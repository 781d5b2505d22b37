"""edgevpr: efficient visual place recognition with recall, memory and latency side by side.

The public API (``edgevpr.api``) loads on first use, so that ``import edgevpr`` and the
command stay quick: ``edgevpr.load_config``, ``build_model``, ``evaluate_model``,
``train_model``, ``quantize_model``, ``build_index``, ``load_index``, ``save_index``,
``search_index``, ``run_sweep``, ``recommend``, ``contract_of``, ``resolve_config``,
``Map`` (build, load, add, localize), ``Localizer`` (frames of a stream), ``ModelSource``,
``InputContract``, ``RunConfig``."""

from edgevpr.public_names import PUBLIC

__version__ = "0.1.0"
__all__ = list(PUBLIC)  # the public API, defined in edgevpr.api


def __getattr__(name: str):
    if name in __all__:
        from edgevpr import api

        return getattr(api, name)
    raise AttributeError(f"module 'edgevpr' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
