"""MLflow registration of what a search chose: the generator as a pyfunc model and the chosen subnets as ONNX
model versions, with aliases (``candidate``, ``candidate-<device>``) and tags. ``modnas_ops.tracking`` (the
only mlflow importer) is imported lazily; ONNX export of chosen subnets is injected (``export_fn``), so no
onnx import here either."""

from __future__ import annotations

import copy
import json
import logging
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .generator import ARTIFACT_KEY, TOP_K, ParetoGenerator, _module_device, save_generator
from .spaces import SearchSpace, get_search_space

log = logging.getLogger(__name__)

_ALIAS_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_RESERVED_ALIAS_RE = re.compile(r"^(latest|v\d+)$", re.IGNORECASE)


def pip_requirements() -> list[str]:
    """torch pinned to the installed release (local tag such as ``+cpu`` dropped), numpy, pandas."""
    return [f"torch=={torch.__version__.split('+')[0]}", "numpy", "pandas"]


def check_alias(alias: str) -> str:
    """``alias`` if MLflow accepts it (letters, digits, '-', '_'; not ``latest`` or ``v<digits>``)."""
    if not _ALIAS_RE.match(alias) or _RESERVED_ALIAS_RE.match(alias):
        raise ValueError(
            f"invalid model alias {alias!r}: use letters, digits, '-', '_' (not 'latest' or 'v<n>')"
        )
    return alias


def device_alias(alias: str, device: str) -> str:
    """``<alias>-<device>`` with every run of other characters in the device name replaced by '-'."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", str(device)).strip("-")
    if not slug:
        raise ValueError(f"device name {device!r} gives an empty alias suffix")
    return check_alias(f"{alias}-{slug}")


def log_generator(
    gen: ParetoGenerator,
    registered_model_name: str | None = "modnas-generator",
    alias: str | None = "candidate",
    name: str = "generator",
    input_example: pd.DataFrame | None = None,
    prefs_per_device: int = 3,
    tags: Mapping[str, Any] | None = None,
) -> tuple[str, str | None]:
    """Log ``gen`` as a pyfunc (inside the active run, if any), register it and point ``alias`` at the version.

    The input example defaults to every known device x ``prefs_per_device`` rays. Returns (model_uri, version).
    """
    from . import tracking

    if alias is not None:
        check_alias(alias)
    example = gen.example_input(prefs_per_device) if input_example is None else input_example
    output = gen.predict(example)
    version_tags = {
        "space": gen.space.name,
        "objectives": ",".join(gen.objectives),
        "devices": ",".join(gen.devices),
        **dict(tags or {}),
    }
    with tempfile.TemporaryDirectory() as tmp:
        directory = save_generator(gen, Path(tmp) / ARTIFACT_KEY)
        return tracking.log_library_model(
            name,
            loader="modnas_ops.generator:load_pyfunc",
            artifacts={ARTIFACT_KEY: str(directory)},
            input_example=example,
            output_example=output,
            pip_requirements=pip_requirements(),
            registered_model_name=registered_model_name,
            alias=alias,
            tags=version_tags,
            optional_inputs={TOP_K: "long"},
            description=(
                f"MODNAS generator for space `{gen.space.name}`: anchor latencies of a device + a preference over "
                f"({', '.join(gen.objectives)}) -> architecture and predicted objectives; optional `top_k` -> the "
                f"k most probable architectures. Devices known: {', '.join(gen.devices)}."
            ),
            model_description=(
                "MODNAS hypernetwork H(r, d) as a pyfunc: POST anchor latencies (`anchor_<metric>_0..`) and "
                "preferences (`pref_0..`, summing to 1) to get an architecture per row; see the run that logged it."
            ),
        )


_RESERVED_ROW_KEYS = {"device", "arch", "preference", "genotype", "chosen"}


def _row_preference(row: Mapping[str, Any], where: str) -> list[float]:
    if "preference" in row:
        value = row["preference"]
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip().startswith("[") else value.split(",")
                return [float(x) for x in value]
            except ValueError:
                raise ValueError(
                    f"{where}: preference {row['preference']!r} is not a list of numbers"
                ) from None
        return [float(x) for x in np.asarray(value, dtype=np.float64).reshape(-1)]
    cols = sorted((k for k in row if re.fullmatch(r"pref_\d+", str(k))), key=lambda k: int(str(k)[5:]))
    if not cols:
        raise ValueError(f"{where}: no 'preference' or pref_0.. values")
    return [float(row[c]) for c in cols]


def _objective_names(rows: Sequence[Mapping[str, Any]], objectives: Sequence[str] | None) -> list[str]:
    if objectives is not None:
        return [str(o) for o in objectives]
    names: list[str] = []
    for row in rows:
        for k, v in row.items():
            k = str(k)
            skip = k in _RESERVED_ROW_KEYS or re.fullmatch(r"(pref|anchor)_.*|.*_index", k)
            if (
                not skip
                and k not in names
                and isinstance(v, (int, float, np.number))
                and not isinstance(v, bool)
            ):
                names.append(k)
    return names


def register_architectures(
    front_rows: pd.DataFrame | Sequence[Mapping[str, Any]],
    space: str | SearchSpace,
    network_kwargs: Mapping[str, Any],
    *,
    export_fn: Callable[[nn.Module, torch.Tensor], Any],
    input_shape: Sequence[int],
    supernet: Any = None,
    networks: Mapping[str, nn.Module] | None = None,
    objectives: Sequence[str] | None = None,
    registered_model_name: str = "modnas-architectures",
    alias: str = "candidate",
    tags: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Export, log and register the selected architecture(s) of each device as ONNX model versions.

    ``front_rows``: rows with ``device``, ``arch`` (canonical string), ``preference`` (list / JSON / "a,b") or
    ``pref_0..``, objective values (``objectives``; default every other numeric column except ``pref_*``,
    ``anchor_*``, the benchmark index) and optionally ``chosen`` (bool). Identical archs of one device become one
    version (all their preferences in its tags); each distinct arch is exported and logged once, and its versions
    (one per device) share that logged model. Networks: ``networks[arch]`` (e.g. fine-tuned subnets) where
    given, else ``supernet.subnet(genotype)`` when a trained supernet is given, else
    ``space.build_network(genotype, input_shape[1:], **network_kwargs)`` (fresh weights, seeded by ``seed``;
    ``network_kwargs``: ``num_classes`` and the space's network hyper-parameters).
    ``export_fn(model, example) -> ONNX ModelProto or bytes`` (example: ``space.example_input`` of ``input_shape``,
    batch first; ``profiling.export.export_onnx``).
    Version tags: device, arch, preference (JSON), objectives (JSON), space, the benchmark index. Alias
    ``<alias>-<device>`` points at the device's chosen version (its ``chosen`` row, else its first row).
    Returns one dict per version: device, arch, preferences, objectives, model_uri, version, alias ("" if none).
    """
    from . import tracking

    check_alias(alias)
    sp = get_search_space(space) if isinstance(space, str) else space
    rows = (
        front_rows.to_dict("records")
        if isinstance(front_rows, pd.DataFrame)
        else [dict(r) for r in front_rows]
    )
    if not rows:
        raise ValueError("register_architectures: no rows")
    obj_names = _objective_names(rows, objectives)
    groups: dict[tuple[str, tuple[int, ...]], dict[str, Any]] = {}
    for i, row in enumerate(rows):
        where = f"register_architectures: row {i}"
        missing = [k for k in ("device", "arch", *obj_names) if k not in row]
        if missing:
            raise ValueError(f"{where}: missing {missing}")
        try:
            g = sp.from_string(str(row["arch"]))
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        key = (str(row["device"]), g)
        grp = groups.setdefault(
            key, {"preferences": [], "objectives": {o: float(row[o]) for o in obj_names}, "chosen": False}
        )
        grp["preferences"].append(_row_preference(row, where))
        grp["chosen"] = grp["chosen"] or bool(row.get("chosen", False))
    chosen: dict[str, tuple[int, ...]] = {}
    for device, g in groups:  # the device's first row ...
        chosen.setdefault(device, g)
    flagged: dict[str, list[str]] = {}
    for (device, g), grp in groups.items():  # ... unless a row says chosen
        if grp["chosen"]:
            flagged.setdefault(device, []).append(sp.to_string(g))
            chosen[device] = g
    several = {d: a for d, a in flagged.items() if len(a) > 1}
    if several:
        raise ValueError(f"register_architectures: several chosen archs for a device: {several}")
    aliases = {device: device_alias(alias, device) for device in chosen}

    exports: dict[tuple[int, ...], tuple[Any, np.ndarray, np.ndarray]] = {}

    def exported(g: tuple[int, ...]) -> tuple[Any, np.ndarray, np.ndarray]:
        if g not in exports:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(sp.seed_of(g, seed))
                if networks is not None and sp.to_string(g) in networks:
                    net = copy.deepcopy(networks[sp.to_string(g)])
                elif supernet is not None:
                    net = supernet.subnet(g)
                else:
                    net = sp.build_network(g, tuple(input_shape[1:]), **dict(network_kwargs))
                net.eval()
                example = sp.example_input(tuple(input_shape[1:]), batch=int(input_shape[0]))
                example = example.to(_module_device(net))
            payload = export_fn(net, example)
            with torch.inference_mode():
                out = net(example).detach().cpu().numpy()
            exports[g] = (payload, example.cpu().numpy(), out)
        return exports[g]

    logged: dict[tuple[int, ...], str] = {}  # genotype -> model URI: one logged ONNX model per distinct subnet
    results = []
    for n, ((device, g), grp) in enumerate(groups.items()):
        arch = sp.to_string(g)
        version_tags = {
            "device": device,
            "arch": arch,
            "preference": json.dumps(grp["preferences"]),
            "objectives": json.dumps(grp["objectives"]),
            "space": sp.name,
            **({sp.benchmark_index_name: sp.benchmark_index(g)} if sp.benchmark_index_name else {}),
            **dict(tags or {}),
        }
        a = aliases[device] if chosen[device] == g else None
        payload, x, y = exported(g)
        if g not in logged:
            logged[g], _ = tracking.log_onnx_model(f"onnx-{len(logged)}", payload, input_example=x, output_example=y)
        uri = logged[g]
        version = tracking.register(
            uri,
            registered_model_name,
            alias=a,
            tags=version_tags,
            description=(
                f"`{arch}` chosen for device {device} at preference(s) {json.dumps(grp['preferences'])}; "
                f"objectives {json.dumps(grp['objectives'])}. ONNX, input {list(x.shape)} -> logits {list(y.shape)}."
            ),
            model_description=None if n else (
                "Architectures chosen by MODNAS searches, one version per (device, architecture) as an ONNX graph "
                "(the versions of one architecture share its logged model); alias `<alias>-<device>` points at a "
                "device's chosen subnet."
            ),
        )
        log.info(
            "registered %s v%s: %s on %s%s",
            registered_model_name,
            version,
            arch,
            device,
            f" @{a}" if a else "",
        )
        results.append(
            {
                "device": device,
                "arch": arch,
                "preferences": grp["preferences"],
                "objectives": grp["objectives"],
                "model_uri": uri,
                "version": version,
                "alias": a or "",
            }
        )
    return results


__all__ = ["check_alias", "device_alias", "log_generator", "pip_requirements", "register_architectures"]
