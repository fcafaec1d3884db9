"""Open Inference Protocol v2 JSON tensors: validate an infer request against the model's input spec."""

from __future__ import annotations

import math
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
MAX_ROWS = 1024  # most samples one request may carry


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


def _flatten(data: Any, into: list[Any]) -> None:
    for item in data:
        if isinstance(item, list):
            _flatten(item, into)
        else:
            into.append(item)


def _numbers(data: Any, where: str) -> list[float]:
    if not isinstance(data, list):
        raise RequestError(400, f"{where}.data must be a list of numbers")
    flat: list[Any] = []
    _flatten(data, flat)
    for value in flat:
        # bool is an int subclass; strings are not numbers even when they look like one.
        if type(value) not in (int, float):
            raise RequestError(400, f"{where}.data holds {type(value).__name__} {value!r}; expected numbers")
        if isinstance(value, float) and not math.isfinite(value):
            raise RequestError(400, f"{where}.data holds a non-finite number")
    return flat


def parse_infer(body: Any, spec: InputSpec, outputs: list[str]) -> InferRequest:
    """Validate an OIP v2 infer request body; raises RequestError(400, why) on anything malformed."""
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
        raise RequestError(400, f"inputs[0].name {tensor['name']!r} is not the model's input {spec.name!r}")
    datatype = tensor["datatype"]
    if datatype not in DATATYPES:
        raise RequestError(
            400, f"inputs[0].datatype {datatype!r} is not supported; use {spec.datatype} (or another numeric type)"
        )
    shape = tensor["shape"]
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise RequestError(400, "inputs[0].shape must be a list of non-negative integers")
    want = [-1, *spec.sample_shape]
    if len(shape) != len(want) or tuple(shape[1:]) != spec.sample_shape:
        raise RequestError(400, f"inputs[0].shape {shape} does not match the model's input shape {want}")
    n = shape[0]
    if not 1 <= n <= MAX_ROWS:
        raise RequestError(400, f"inputs[0].shape[0] (batch) must be 1..{MAX_ROWS}, got {n}")
    flat = _numbers(tensor["data"], "inputs[0]")
    if len(flat) != math.prod(shape):
        raise RequestError(400, f"inputs[0].data has {len(flat)} values; shape {shape} needs {math.prod(shape)}")
    values = np.asarray(flat, dtype=DATATYPES[datatype])
    if datatype.startswith("FP") and datatype != "FP32" and not np.all(np.isfinite(values.astype(np.float32))):
        raise RequestError(400, "inputs[0].data does not fit float32")
    rows = values.astype(np.float32).reshape(shape)
    wanted = _outputs(body.get("outputs"), outputs)
    rid = body.get("id")
    if rid is not None and not isinstance(rid, str):
        raise RequestError(400, "'id' must be a string")
    return InferRequest(rows=rows, id=rid, outputs=wanted)


def _outputs(requested: Any, known: list[str]) -> list[str] | None:
    if requested is None:
        return None
    if not isinstance(requested, list) or not all(isinstance(o, dict) and "name" in o for o in requested):
        raise RequestError(400, "'outputs' must be a list of objects with a 'name'")
    names = [o["name"] for o in requested]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise RequestError(400, f"unknown output(s) {unknown}; the model has {known}")
    return names
