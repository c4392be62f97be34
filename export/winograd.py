"""Rewrite an ONNX graph's stride-1 convolutions as Winograd convolutions (CPU graph).

Why: ONNX Runtime's direct convolution already runs at this class of CPU's float32 peak,
so JPP-Net only gets faster by multiplying less. Winograd's minimal filtering F(m, r)
makes an m x m output tile from an (m+r-1)^2 input tile with (m+r-1)^2 products per
channel pair instead of m^2 r^2.

How, per undilated convolution (K outputs, C inputs, R x R kernel):
- Kernels larger than r are cut into nb x nb blocks of r x r at offsets of m (r >= m,
  every tap in exactly one block). In the transformed domain the blocks become an
  nb x nb convolution over the grid of tiles: per block, a Conv with T^2 groups
  (T = m + r - 1) over the tile grid shifted by the block's offset, summed. A 9x9
  kernel costs 2x2 blocks of F(4, 5): 4 * 64 products per 16 outputs, not 16 * 81.
- Input transform B^T d B: a depthwise Conv with T^2 fixed T x T filters at stride m;
  output transform A^T M A (+ bias): a Conv with K groups, then a pixel shuffle.
- The transformed weights U = G W G^T are 2.6-4x as many numbers as W, so the file keeps
  W (tap-major, [R*R, K*C]) and the graph makes U with one matrix product per block at
  each run (a few % of the convolution's work); a session holds U only while the layer
  runs. Sessions must therefore not constant-fold this graph (SessionOptions).

Not rewritten: dilated convolutions (split into phases they ran slower than ONNX
Runtime's own), strided ones, layers outside MIN_CHANNELS..MAX_INPUT_CHANNELS, and,
where the caller asks (`min_pixels`), layers whose input the graph knows to be small.

Exact in real arithmetic; in float32 each layer adds about 1e-5 of its output's range
(tests/test_winograd.py), and the export validates the whole graph against TensorFlow.
"""
from __future__ import annotations

import collections

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .batch_norm_folding import attributes, fold_batch_norms

# kernel size -> (m, r), the fastest measured with ONNX Runtime 1.32 on 256-2048 channel
# layers at 48x48, batch 2 (2 cores, AVX-512): 3x3 1.7-2.5x, 5x5 2.9x, 7x7 2.7x, 9x9 3.8x.
PLANS = {3: (4, 3), 5: (4, 5), 7: (4, 4), 9: (4, 5)}
# Interpolation points for the Toom-Cook construction (plus the point at infinity);
# a tile of T uses the first T - 1. Small, symmetric points keep the error low.
POINTS = (0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5)
# Below this many input or output channels the transforms cost more than they save.
MIN_CHANNELS = 128
# Above this many input channels the transformed input (2.25x the input for F(4, 3),
# held twice while it is reordered) costs more memory than it saves time: JPP-Net's one
# 2048-channel layer held 250 MB more at the 480 scale and saved 3% of the stage's time.
MAX_INPUT_CHANNELS = 1024


def transforms(m: int, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A^T (m x T), G (T x r), B^T (T x T) of F(m, r), in float64: y = A^T[(G g) * (B^T d)]."""
    t = m + r - 1
    if t - 1 > len(POINTS):
        raise ValueError(f"F({m}, {r}) needs {t - 1} points, only {len(POINTS)} are defined")
    points = np.array(POINTS[: t - 1])

    def vandermonde(columns: int) -> np.ndarray:
        v = np.zeros((t, columns))
        v[:-1] = points[:, None] ** np.arange(columns)
        v[-1, -1] = 1.0  # the point at infinity: the highest coefficient
        return v

    return vandermonde(m).T, vandermonde(r), np.linalg.inv(vandermonde(t)).T


def kernel_blocks(size: int, m: int, r: int) -> int:
    return max(1, -(-(size - r) // m) + 1)


def weight_transform(size: int, m: int, r: int) -> np.ndarray:
    """Q (nb*T x size) with U_blocks = Q W Q^T along each kernel axis: tap i goes to
    block b = min(i // m, nb - 1) at position i - b*m, then through G."""
    _, g, _ = transforms(m, r)
    t, nb = m + r - 1, kernel_blocks(size, m, r)
    q = np.zeros((nb * t, size))
    for i in range(size):
        b = min(i // m, nb - 1)
        if i - b * m >= r:
            raise ValueError(f"F({m}, {r}) cannot cover a {size}-tap kernel")
        q[b * t:(b + 1) * t, i] = g[:, i - b * m]
    return q


class _Graph:
    """Nodes and constants for one rewritten convolution, named under a prefix."""

    def __init__(self, prefix: str):
        self.prefix, self.nodes, self.constants = prefix, [], []

    def const(self, name: str, value, shared: bool = False) -> str:
        """A constant; `shared` ones are named by what they hold, and every layer with
        the same shapes reads the one copy (rewrite() keeps the first)."""
        full = f"winograd/{name}" if shared else f"{self.prefix}/const/{name}"
        self.constants.append(numpy_helper.from_array(np.asarray(value), full))
        return full

    def op(self, op_type: str, inputs, name: str, **attrs) -> str:
        out = f"{self.prefix}/{name}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    def dims(self, tensor: str, start: int, end: int, name: str) -> str:
        shape = self.op("Shape", [tensor], f"{name}_shape")
        return self.op("Slice", [shape, self.const(f"{name}_from", np.array([start], np.int64)),
                                 self.const(f"{name}_to", np.array([end], np.int64))], name)

    def shape(self, parts, name: str) -> str:
        """Concat of int64 pieces: Python ints become constants, strings are tensors."""
        inputs = [p if isinstance(p, str) else self.const(f"{name}_{i}", np.array([p], np.int64))
                  for i, p in enumerate(parts)]
        return self.op("Concat", inputs, name, axis=0)


def block_transforms(size: int, m: int, r: int) -> np.ndarray:
    """[nb*nb, T*T, size*size]: U_b = Q_b Wt turns tap-major weights Wt [size*size, K*C]
    into block b's transformed weights [T*T, K*C] (frequency-major) in one matrix product."""
    t, nb = m + r - 1, kernel_blocks(size, m, r)
    q = weight_transform(size, m, r).reshape(nb, t, size)
    return np.stack([np.kron(q[bi], q[bj]) for bi in range(nb) for bj in range(nb)])


def tap_major(weight: np.ndarray) -> np.ndarray:
    """W [K, C, R, R] -> Wt [R*R, K*C], the layout the rewritten graph stores."""
    k, c, size, _ = weight.shape
    return np.ascontiguousarray(weight.transpose(2, 3, 0, 1).reshape(size * size, k * c))


def _winograd(g: _Graph, x: str, weight: str, shape: tuple, bias: np.ndarray) -> str:
    """SAME convolution of x [B, C, h, w] with the tap-major weights `weight`;
    returns [B, K, >=h, >=w]."""
    k, c, size, _ = shape
    m, r = PLANS[size]
    t, nb = m + r - 1, kernel_blocks(size, m, r)
    pad = (size - 1) // 2
    extra = (nb - 1) * m + t - 1 - pad  # enough tiles for any h (tests/test_winograd.py)
    at, _, bt = transforms(m, r)
    filters = np.einsum("ai,bj->abij", bt, bt).reshape(t * t, 1, t, t)
    v = g.op("Conv", [x, g.const(f"B_{c}x{t}", np.tile(filters, (c, 1, 1, 1)).astype(np.float32), True)], "V",
             group=c, strides=[m, m], pads=[pad, pad, extra, extra])  # [B, C*T*T, gh, gw]
    grid = g.dims(v, 2, 4, "grid")
    v = g.op("Reshape", [v, g.shape([-1, c, t * t, grid], "v5_shape")], "V5")
    v = g.op("Transpose", [v], "V5_t", perm=[0, 2, 1, 3, 4])
    v = g.op("Reshape", [v, g.shape([-1, t * t * c, grid], "v4_shape")], "V4")
    parts = []
    for i, q in enumerate(block_transforms(size, m, r)):
        u = g.op("MatMul", [g.const(f"Q{i}_{size}_F{m}_{r}", q.astype(np.float32), True), weight], f"U{i}")
        u = g.op("Reshape", [u, g.const(f"U{i}_shape", np.array([t * t * k, c, 1, 1], np.int64))], f"U{i}_4d")
        bi, bj = divmod(i, nb)
        ends = [bi - (nb - 1) if bi < nb - 1 else np.iinfo(np.int64).max,
                bj - (nb - 1) if bj < nb - 1 else np.iinfo(np.int64).max]
        shifted = g.op("Slice", [v, g.const(f"S{i}_from", np.array([bi, bj], np.int64)),
                                 g.const(f"S{i}_to", np.array(ends, np.int64)),
                                 g.const(f"S{i}_axes", np.array([2, 3], np.int64))], f"V{i}")
        parts.append(g.op("Conv", [shifted, u], f"M{i}", group=t * t))
    mm = parts[0] if len(parts) == 1 else g.op("Sum", parts, "M")  # [B, T*T*K, th, tw]
    tiles = g.dims(mm, 2, 4, "tiles")
    mm = g.op("Reshape", [mm, g.shape([-1, t * t, k, tiles], "m5_shape")], "M5")
    mm = g.op("Transpose", [mm], "M5_t", perm=[0, 2, 1, 3, 4])
    mm = g.op("Reshape", [mm, g.shape([-1, k * t * t, tiles], "m4_shape")], "M4")
    outputs = np.tile(np.einsum("ua,vb->uvab", at, at).reshape(m * m, t * t, 1, 1), (k, 1, 1, 1))
    y = g.op("Conv", [mm, g.const(f"A_{k}x{m}x{t}", outputs.astype(np.float32), True),
                      g.const("bias", np.repeat(bias, m * m).astype(np.float32))], "Y", group=k)
    return g.op("DepthToSpace", [y], "pixels", blocksize=m, mode="CRD")


def _padding(attrs: dict, size: int) -> bool:
    """True when the convolution pads SAME: (size - 1) / 2 on every side."""
    same = (size - 1) // 2
    if "auto_pad" in attrs and attrs["auto_pad"] not in (b"NOTSET", "NOTSET"):
        return attrs["auto_pad"] in (b"SAME_UPPER", b"SAME_LOWER", "SAME_UPPER", "SAME_LOWER")
    return set(attrs.get("pads", [0, 0, 0, 0])) == {same}


def eligible(node, shapes: dict, min_channels: int, max_input_channels: int) -> bool:
    shape = shapes.get(node.input[1]) if node.op_type == "Conv" else None
    if shape is None or len(shape) != 4:
        return False
    k, c, kh, kw = shape
    a = attributes(node)
    return (kh == kw and kh in PLANS and a.get("group", 1) == 1 and set(a.get("strides", [1, 1])) == {1}
            and set(a.get("dilations", [1, 1])) == {1} and _padding(a, kh) and min(k, c) >= min_channels
            and c <= max_input_channels)


def rewrite_conv(node, weight: np.ndarray, bias: np.ndarray | None, index: int) -> tuple[list, list]:
    """Nodes and constants that replace one eligible Conv node (same input and output);
    the constants include its weights, tap-major, under the weight's name."""
    g = _Graph(f"winograd{index}")
    bias = np.zeros(len(weight), np.float32) if bias is None else bias
    g.constants.append(numpy_helper.from_array(tap_major(weight), node.input[1]))
    y = _winograd(g, node.input[0], node.input[1], weight.shape, bias)
    cropped = [y, g.const("from", np.zeros(2, np.int64)), g.dims(node.input[0], 2, 4, "hw"),
               g.const("axes", np.array([2, 3], np.int64))]
    g.nodes.append(helper.make_node("Slice", cropped, [node.output[0]], name=f"{g.prefix}/cropped"))
    return g.nodes, g.constants


def input_pixels(model: onnx.ModelProto) -> dict[str, int]:
    """height * width of every 4-D tensor whose spatial size the graph fixes (after shape inference)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    pixels = {}
    for value in (*inferred.graph.input, *inferred.graph.value_info):
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4 and all(d.HasField("dim_value") for d in dims[2:]):
            pixels[value.name] = dims[2].dim_value * dims[3].dim_value
    return pixels


def rewrite(model: onnx.ModelProto, min_channels: int = MIN_CHANNELS,
            max_input_channels: int = MAX_INPUT_CHANNELS, min_pixels: int = 0) -> int:
    """Fold batch norms, then replace every eligible Conv in place; returns how many were
    replaced. Each replaced convolution's weights are stored tap-major (same size).
    min_pixels: leave alone convolutions whose input is known to have fewer pixels per image;
    there the transformed weights (4x the weights for F(4, 3)), made at every run, cost more
    to write and read than the products saved."""
    fold_batch_norms(model)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    shapes = {name: tuple(t.dims) for name, t in inits.items()}
    pixels = input_pixels(model) if min_pixels else {}
    consumers = collections.Counter(name for node in graph.node for name in node.input)
    nodes, constants, replaced = [], {}, 0
    for node in graph.node:
        if (not eligible(node, shapes, min_channels, max_input_channels) or consumers[node.input[1]] != 1
                or pixels.get(node.input[0], min_pixels) < min_pixels):
            nodes.append(node)
            continue
        weight = numpy_helper.to_array(inits[node.input[1]])
        bias = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 and node.input[2] else None
        new_nodes, new_constants = rewrite_conv(node, weight, bias, replaced)
        nodes.extend(new_nodes)
        constants.update({c.name: c for c in new_constants if c.name not in constants})
        replaced += 1
        for name in node.input[1:]:
            if name and consumers[name] == 1:
                graph.initializer.remove(inits.pop(name))
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(constants.values())
    return replaced
