"""What this CPU can do: its instruction-set flags, the vector extensions that decide which
kernels NumPy, OpenCV and ONNX Runtime run (and so the last bits of a float and the speed of
int8 and bf16), and its model name. Records and `tryon info` name them, so figures from
different machines are never compared blindly."""
from __future__ import annotations

import platform

# (name in records, /proc/cpuinfo flags of which any one means the extension is there)
VECTOR_EXTENSIONS = (
    ("AVX2", ("avx2",)),
    ("AVX-512", ("avx512f",)),
    ("VNNI", ("avx512_vnni", "avx_vnni")),  # int8 dot products without 16-bit saturation
    ("BF16", ("avx512_bf16",)),
    ("AMX", ("amx_tile", "amx_bf16", "amx_int8")),
)


def _cpuinfo(*keys: str) -> str:
    """The value of the first /proc/cpuinfo line that starts with one of `keys` ("" if none)."""
    try:
        with open("/proc/cpuinfo") as info:
            return next((line.split(":", 1)[1].strip() for line in info if line.startswith(keys)), "")
    except OSError:
        return ""


def cpu_flags() -> set[str]:
    """The CPU's instruction sets as /proc/cpuinfo names them (empty where it cannot be read)."""
    return set(_cpuinfo("flags", "Features").split())


def vector_extensions() -> list[str]:
    """Those of AVX2, AVX-512, VNNI, BF16 and AMX that this CPU has."""
    flags = cpu_flags()
    return [name for name, names in VECTOR_EXTENSIONS if flags & set(names)]


def has_vnni() -> bool:
    return "VNNI" in vector_extensions()


def cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor()


def describe_cpu() -> str:
    """e.g. 'AMD EPYC: AVX2 AVX-512 VNNI BF16 (no AMX)'."""
    have = vector_extensions()
    missing = [name for name, _ in VECTOR_EXTENSIONS if name not in have]
    model = cpu_model() or platform.machine()
    if not have:
        return f"{model}: none of {', '.join(missing)}"
    return f"{model}: {' '.join(have)}" + (f" (no {', '.join(missing)})" if missing else "")
