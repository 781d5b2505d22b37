"""A component's options: the dataclass it registers with (``REGISTRY.register(name,
params=Options)``), filled from the config's params block (``model.backbone.params``,
``model.aggregator.params``) and checked by the dataclass itself (``__post_init__``)."""

from __future__ import annotations

import dataclasses
import math
import typing

from edgevpr.config import coerce
from edgevpr.errors import ConfigError
from edgevpr.registry import Registry


def component_params(registry: Registry, name: str, values: dict, where: str):
    """``values`` as the options dataclass of component ``name``, or None when it has none;
    a key it does not know, or a value out of its range, is one line naming ``where``."""
    params_type = registry.params_type(name)
    if params_type is None:
        if values:
            raise ConfigError(f"{where}: {registry.kind} {name!r} takes no options; got {', '.join(sorted(values))}")
        return None
    known = sorted(field.name for field in dataclasses.fields(params_type))
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(
            f"{where}: {registry.kind} {name!r} has no option {unknown[0]!r}; its options: {', '.join(known)}"
        )
    hints = typing.get_type_hints(params_type)
    try:
        return params_type(**{key: coerce(value, hints[key], f"{where}.{key}") for key, value in values.items()})
    except ValueError as error:
        raise ConfigError(f"{where}: {error}") from None


def build_component(registry: Registry, name: str, values: dict, where: str, *args):
    """The component ``name`` built from ``args``, with its options when it has any."""
    params = component_params(registry, name, values, where)
    builder = registry.get(name)
    return builder(*args) if params is None else builder(*args, params)


def resolved_params(backbone: str, backbone_params: dict, aggregator: str, aggregator_params: dict):
    """Both params blocks with every option of the component filled (its default where not
    given) and coerced to its type: what a resolved config stores, so that a recipe names them."""
    import edgevpr.models.aggregators  # noqa: F401  (fill the registries)
    import edgevpr.models.backbones  # noqa: F401
    from edgevpr.models.registry import AGGREGATORS, BACKBONES

    def full(registry, name, values, where):
        params = component_params(registry, name, values, where)
        return {} if params is None else dataclasses.asdict(params)

    return (
        full(BACKBONES, backbone, backbone_params, "model.backbone.params"),
        full(AGGREGATORS, aggregator, aggregator_params, "model.aggregator.params"),
    )


def positive(value: float, option: str, rule: str = "> 0") -> None:
    """The range check an options dataclass calls in ``__post_init__``: finite and ``rule``."""
    if not math.isfinite(value) or not (value > 0 if rule == "> 0" else value >= 1):
        raise ValueError(f"{option} must be a finite number {rule}, got {value!r}")
