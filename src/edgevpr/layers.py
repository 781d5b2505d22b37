"""The layer order of edgevpr's packages, lowest first: a package imports only packages of its
own layer or below (``tests/test_layers.py`` checks every import, lazy ones inside functions
included, and that no two packages import each other). Data flows the same way: images ->
descriptors (+ patches) -> index -> candidates -> re-ranked predictions -> metrics and
localizations. docs/architecture.md draws it."""

LAYERS = (
    ("foundation", ("errors", "version", "layers")),
    ("checks and tables", ("validate", "registry", "progress", "public_names")),
    ("config and files", ("config", "atomic", "timing", "compat")),
    ("input contract", ("contract", "charts")),
    ("data, runtimes, search, second stage", ("data", "runtime", "search", "rerank")),
    ("extraction", ("extraction",)),
    ("models", ("models",)),
    ("deploy", ("quantize",)),
    ("research, evaluation, maps", ("research", "evaluate", "maps")),
    ("training", ("train",)),
    ("exploration", ("explore",)),
    ("composition", ("demo", "api", "cli", "edgevpr")),
)


def level(unit: str) -> int:
    """The layer number of a package or top-level module (``edgevpr`` is the root package)."""
    for number, (_, units) in enumerate(LAYERS):
        if unit in units:
            return number
    raise KeyError(f"{unit} is in no layer of edgevpr.layers.LAYERS")
