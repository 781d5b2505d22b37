"""The names of edgevpr's public API (defined in ``edgevpr.api``), listed once for the lazy
package ``__init__`` and for ``api`` itself."""

PUBLIC = (
    "InputContract",
    "Localizer",
    "Map",
    "ModelSource",
    "RunConfig",
    "build_index",
    "build_model",
    "contract_of",
    "evaluate_model",
    "load_config",
    "load_index",
    "quantize_model",
    "recommend",
    "resolve_config",
    "run_sweep",
    "save_index",
    "search_index",
    "train_model",
)
