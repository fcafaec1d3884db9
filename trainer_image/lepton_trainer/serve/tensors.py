"""Open Inference Protocol v2 JSON tensors: validate an infer request against the model's input spec."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

# OIP datatype -> numpy dtype for the numeric types a model input can be fed with.
DATATYPES: dict[str, Any] = {
    "FP32": np.float32,
    "FP64": np.float64,
    "FP16": np.float16,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
}
TORCH_TO_OIP = {"float32": "FP32", "float64": "FP64", "float16": "FP16", "int64": "INT64", "int32": "INT32"}
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class TensorLimits:
    """Bounds on one request's tensor: samples, values and nesting of ``data``."""

    max_rows: int = 1024
    max_elements: int = 1 << 20
    max_depth: int = 8


class RequestError(ValueError):
    """A request the server refuses: HTTP status and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class InputSpec:
    """The one input tensor of a model: name, per-sample shape and OIP datatype."""

    name: str
    sample_shape: tuple[int, ...]
    datatype: str


@dataclass(frozen=True)
class InferRequest:
    """A validated request: the rows to run, the id to echo, the outputs wanted (None = all)."""

    rows: npt.NDArray[np.float32]
    id: str | None
    outputs: list[str] | None


def _flatten(data: list[Any], where: str, limits: TensorLimits) -> list[Any]:
    """The leaves of nested lists in order, iteratively (no recursion), refusing deep nesting and too many."""
    flat: list[Any] = []
    stack: list[tuple[Iterator[Any], int]] = [(iter(data), 1)]
    while stack:
        items, depth = stack[-1]
        for item in items:
            if isinstance(item, list):
                if depth >= limits.max_depth:
                    raise RequestError(400, f"{where}.data is nested deeper than {limits.max_depth} levels")
                stack.append((iter(item), depth + 1))
                break
            flat.append(item)
        else:
            stack.pop()
        if len(flat) > limits.max_elements:
            raise RequestError(400, f"{where}.data has more than {limits.max_elements} values")
    return flat


def _numbers(data: Any, where: str, limits: TensorLimits) -> list[float]:
    if not isinstance(data, list):
        raise RequestError(400, f"{where}.data must be a list of numbers")
    flat = _flatten(data, where, limits)
    for value in flat:
        # bool is an int subclass; strings are not numbers even when they look like one.
        if type(value) not in (int, float):
            raise RequestError(400, f"{where}.data holds {type(value).__name__} {_short(value)}; expected numbers")
        if type(value) is float and not math.isfinite(value):
            raise RequestError(400, f"{where}.data holds a non-finite number")
    return flat


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _convert(flat: list[float], datatype: str, where: str) -> npt.NDArray[np.float32]:
    """The values as float32 rows; out-of-range values for the declared datatype are refused."""
    dtype = np.dtype(DATATYPES[datatype])
    if dtype.kind in "iu":
        if any(type(v) is float for v in flat):
            raise RequestError(400, f"{where}.data holds a non-integer value for datatype {datatype}")
        info = np.iinfo(dtype)
        low, high = min(flat, default=0), max(flat, default=0)
        if low < info.min or high > info.max:
            bad = low if low < info.min else high
            raise RequestError(400, f"{where}.data value {_short(bad)} is out of range for {datatype}")
        return np.asarray(flat, dtype=dtype).astype(np.float32)
    limit = min(float(np.finfo(dtype).max), FLOAT32_MAX)  # the model computes in float32
    if any(abs(v) > limit for v in flat):
        raise RequestError(400, f"{where}.data holds a value beyond the {datatype} range (|x| <= {limit:g})")
    return np.asarray(flat, dtype=dtype).astype(np.float32)


def parse_infer(body: Any, spec: InputSpec, outputs: list[str], limits: TensorLimits | None = None) -> InferRequest:
    """Validate an OIP v2 infer request body; raises RequestError(400, why) on anything malformed."""
    limits = limits or TensorLimits()
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object with 'inputs'")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise RequestError(400, "missing field 'inputs': a non-empty list of tensors")
    if len(inputs) != 1:
        raise RequestError(400, f"the model takes 1 input ({spec.name!r}), got {len(inputs)}")
    tensor = inputs[0]
    if not isinstance(tensor, dict):
        raise RequestError(400, "inputs[0] must be an object with name, shape, datatype and data")
    for key in ("name", "shape", "datatype", "data"):
        if key not in tensor:
            raise RequestError(400, f"inputs[0]: missing field {key!r}")
    if tensor["name"] != spec.name:
        raise RequestError(400, f"inputs[0].name {_short(tensor['name'])} is not the model's input {spec.name!r}")
    datatype = tensor["datatype"]
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise RequestError(
            400,
            f"inputs[0].datatype {_short(datatype)} is not supported; use {spec.datatype} (or {', '.join(DATATYPES)})",
        )
    shape = tensor["shape"]
    want = [-1, *spec.sample_shape]
    if not isinstance(shape, list) or len(shape) > 16 or not all(type(d) is int and d >= 0 for d in shape):
        raise RequestError(400, "inputs[0].shape must be a list of non-negative integers")
    if len(shape) != len(want) or tuple(shape[1:]) != spec.sample_shape:
        raise RequestError(400, f"inputs[0].shape {_short(shape)} does not match the model's input shape {want}")
    n = shape[0]
    if not 1 <= n <= limits.max_rows:
        raise RequestError(400, f"inputs[0].shape[0] (batch) must be 1..{limits.max_rows}, got {n}")
    if math.prod(shape) > limits.max_elements:
        raise RequestError(400, f"inputs[0].shape {shape} has more than {limits.max_elements} values")
    flat = _numbers(tensor["data"], "inputs[0]", limits)
    if len(flat) != math.prod(shape):
        raise RequestError(400, f"inputs[0].data has {len(flat)} values; shape {shape} needs {math.prod(shape)}")
    rows = _convert(flat, datatype, "inputs[0]").reshape(shape)
    wanted = _outputs(body.get("outputs"), outputs)
    rid = body.get("id")
    if rid is not None and (not isinstance(rid, str) or len(rid) > 256):
        raise RequestError(400, "'id' must be a string of at most 256 characters")
    return InferRequest(rows=rows, id=rid, outputs=wanted)


def _outputs(requested: Any, known: list[str]) -> list[str] | None:
    if requested is None:
        return None
    if (
        not isinstance(requested, list)
        or len(requested) > len(known)
        or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in requested)
    ):
        raise RequestError(400, f"'outputs' must be a list of at most {len(known)} objects with a string 'name'")
    names = [o["name"] for o in requested]
    unknown = [n[:40] for n in names if n not in known]
    if unknown:
        raise RequestError(400, f"unknown output(s) {unknown}; the model has {known}")
    return names
