"""The names of edgevpr's public API and where each one lives, listed once for the lazy
package ``__init__`` and for ``edgevpr.api``: ``import edgevpr`` imports nothing heavy, and
``edgevpr.Map`` imports the maps package alone (not training, exploration or research)."""

PUBLIC = {
    "InputContract": "edgevpr.contract:InputContract",
    "Localizer": "edgevpr.maps:Localizer",
    "Map": "edgevpr.maps:Map",
    "ModelSource": "edgevpr.maps:ModelSource",
    "RunConfig": "edgevpr.config:RunConfig",
    "build_index": "edgevpr.search.index:build_index",
    "build_model": "edgevpr.models:build_model",
    "contract_of": "edgevpr.models.resolve:contract_of",
    "evaluate_model": "edgevpr.evaluate.runner:evaluate",
    "load_config": "edgevpr.config:load_config",
    "load_index": "edgevpr.search.store:load_index",
    "quantize_model": "edgevpr.api:quantize_model",
    "recommend": "edgevpr.api:recommend",
    "resolve_config": "edgevpr.models.resolve:resolve_config",
    "run_sweep": "edgevpr.api:run_sweep",
    "save_index": "edgevpr.search.store:save_index",
    "search_index": "edgevpr.search.index:search",
    "train_model": "edgevpr.train.loop:train",
}


def load_public(name: str):
    """The object behind a public name, importing only the module that defines it."""
    import importlib

    module, attribute = PUBLIC[name].split(":")
    return getattr(importlib.import_module(module), attribute)
