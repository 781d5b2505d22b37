"""edgevpr: efficient visual place recognition with recall, memory and latency side by side.

The public API loads on first use, each name from its own module (``edgevpr.public_names``),
so that ``import edgevpr`` and the command stay quick and a robot that loads a map imports no
training, exploration or research code: ``edgevpr.load_config``, ``build_model``,
``evaluate_model``, ``train_model``, ``quantize_model``, ``build_index``, ``load_index``,
``save_index``, ``search_index``, ``run_sweep``, ``recommend``, ``contract_of``,
``resolve_config``, ``Map`` (build, load, add, localize), ``Localizer`` (frames of a stream),
``ModelSource``, ``InputContract``, ``RunConfig``."""

from edgevpr.public_names import PUBLIC, load_public
from edgevpr.version import __version__ as __version__

__all__ = sorted(PUBLIC)


def __getattr__(name: str):
    if name in PUBLIC:
        return load_public(name)
    raise AttributeError(f"module 'edgevpr' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
