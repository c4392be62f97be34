"""Strict loading of the published GMM / TOM `.pth` state_dicts, family told by tensor shapes.

The two families differ only in the number of agnostic channels, which shows in the
first convolution of each network: GMM `extractionA.model.0.weight` [64, 22|20, 4, 4],
TOM `model.model.0.weight` [64, 25|23, 4, 4]. Anything that is not exactly one of
the known layouts is refused with a CheckpointError that says what differs.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
from tryon.stages.agnostic import FAMILIES

from .cpvton_networks import GMM, UnetGenerator
from .errors import CheckpointError  # shared with JPP-Net, so the CLI maps both to one exit code

GMM_FIRST_CONV = "extractionA.model.0.weight"
TOM_FIRST_CONV = "model.model.0.weight"
WRAPPER_PREFIX = "module."  # left by nn.DataParallel when a wrapped model was saved
SHOWN = 8  # keys listed per kind of difference


def gmm_channels(family: str) -> int:
    return FAMILIES[family].channels


def tom_channels(family: str) -> int:
    return FAMILIES[family].channels + 3  # agnostic + the warped cloth


def build(network: str, family: str) -> torch.nn.Module:
    if network == "gmm":
        return GMM(gmm_channels(family))
    return UnetGenerator(tom_channels(family), 4, 6, ngf=64)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError,
            UnicodeDecodeError, AttributeError, TypeError) as exc:
        # torch's own message is pages long and advises weights_only=False; say what matters.
        raise CheckpointError(
            f"{path}: not a torch state_dict that loads with weights_only=True ({type(exc).__name__}); "
            "expected the published gmm/tom .pth (torch.save(model.state_dict()))") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a state_dict (names -> tensors)")
    if state and all(k.startswith(WRAPPER_PREFIX) for k in state):
        state = {k[len(WRAPPER_PREFIX):]: v for k, v in state.items()}
    return state


def detect_family(state: dict[str, torch.Tensor], network: str, path: str | Path = "checkpoint") -> str:
    key, channels = (GMM_FIRST_CONV, gmm_channels) if network == "gmm" else (TOM_FIRST_CONV, tom_channels)
    found = tuple(state[key].shape) if key in state else None
    for family in FAMILIES:
        if found == (64, channels(family), 4, 4):
            return family
    known = ", ".join(f"{f} [64, {channels(f)}, 4, 4]" for f in FAMILIES)
    raise CheckpointError(
        f"{path}: not a {network.upper()} checkpoint of a known family: {key} is "
        f"{'missing' if found is None else list(found)}; known families: {known}")


def load_network(path: str | Path, network: str) -> tuple[torch.nn.Module, str]:
    """(the network in eval mode with the file's weights, family). network: 'gmm' or 'tom'."""
    if network not in ("gmm", "tom"):
        raise ValueError(f"network must be 'gmm' or 'tom', got {network!r}")
    state = read_state_dict(path)
    family = detect_family(state, network, path)
    model = build(network, family)
    check_layout(state, model.state_dict(), f"{path} ({family} {network.upper()})")
    model.load_state_dict(state, strict=True)
    return model.eval(), family


def check_layout(state: dict, expected: dict, what: str):
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshapen = [f"{k} {list(state[k].shape)} (expected {list(v.shape)})"
                 for k, v in expected.items() if k in state and state[k].shape != v.shape]
    problems = [f"{name}: {_listed(keys)}" for name, keys in
                (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshapen)) if keys]
    if problems:
        raise CheckpointError(f"{what} does not match the published layout; " + "; ".join(problems))


def _listed(keys: list[str]) -> str:
    more = f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else ""
    return ", ".join(keys[:SHOWN]) + more
