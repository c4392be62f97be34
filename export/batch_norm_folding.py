"""Fold inference batch norms into the convolutions before them, in float64.

JPP-Net's graph from tf2onnx keeps every BatchNormalization as its own node. ONNX
Runtime fuses them at load, but the graphs this project derives from jppnet.onnx need
them folded in the file: the Winograd rewrite transforms the final weights, and the
fp16 graph scales the weights in float64 before rounding them once to fp16, rather
than rounding gamma / sqrt(var + eps) and the weights apart.
"""
from __future__ import annotations

import collections

import numpy as np
import onnx
from onnx import helper, numpy_helper


def attributes(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def fold_batch_norms(model: onnx.ModelProto) -> int:
    """Conv -> BatchNormalization (inference) pairs become one Conv with scaled weights and
    a bias, as ONNX Runtime's own fusion does at load; returns how many were folded. The
    batch norms' parameters go with them; weights another node also reads stay as they are."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consumers = collections.Counter(name for node in graph.node for name in node.input)
    producers = {out: node for node in graph.node for out in node.output}
    kept, folded = [], 0
    for node in graph.node:
        conv = producers.get(node.input[0]) if node.op_type == "BatchNormalization" else None
        if (conv is None or conv.op_type != "Conv" or consumers[conv.output[0]] != 1
                or not all(i in inits for i in node.input[1:]) or consumers[conv.input[1]] != 1
                or not all(i in inits for i in conv.input[1:] if i)):
            kept.append(node)
            continue
        gamma, beta, mean, var = (numpy_helper.to_array(inits[i]).astype(np.float64) for i in node.input[1:5])
        eps = attributes(node).get("epsilon", 1e-5)
        scale = gamma / np.sqrt(var + eps)
        weight = numpy_helper.to_array(inits[conv.input[1]])
        has_bias = len(conv.input) > 2 and conv.input[2]
        bias = numpy_helper.to_array(inits[conv.input[2]]) if has_bias else np.zeros(len(scale))
        inits[conv.input[1]].CopyFrom(numpy_helper.from_array(
            (weight * scale[:, None, None, None]).astype(np.float32), conv.input[1]))
        bias_name = f"{conv.input[1]}/folded_bias"
        graph.initializer.append(numpy_helper.from_array(((bias - mean) * scale + beta).astype(np.float32), bias_name))
        replaced = [*node.input[1:5], *([conv.input[2]] if has_bias else [])]  # BN parameters, old bias
        conv.input[:] = [conv.input[0], conv.input[1], bias_name]
        conv.output[0] = node.output[0]
        for name in replaced:
            consumers[name] -= 1
            if consumers[name] == 0:
                graph.initializer.remove(inits.pop(name))
        folded += 1
    del graph.node[:]
    graph.node.extend(kept)
    return folded
