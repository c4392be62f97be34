"""The CPU's vector extensions as records and `tryon info` name them."""
from tryon import cpu


def test_extensions_follow_the_flags_and_the_description_names_what_is_missing(monkeypatch):
    monkeypatch.setattr(cpu, "cpu_model", lambda: "Some EPYC")
    monkeypatch.setattr(cpu, "cpu_flags", lambda: {"avx2", "fma", "sse4_2"})
    assert cpu.vector_extensions() == ["AVX2"] and not cpu.has_vnni()
    assert cpu.describe_cpu() == "Some EPYC: AVX2 (no AVX-512, VNNI, BF16, AMX)"
    monkeypatch.setattr(cpu, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_vnni", "avx512_bf16"})
    assert cpu.vector_extensions() == ["AVX2", "AVX-512", "VNNI", "BF16"] and cpu.has_vnni()
    assert cpu.describe_cpu() == "Some EPYC: AVX2 AVX-512 VNNI BF16 (no AMX)"
    monkeypatch.setattr(cpu, "cpu_flags", lambda: {"avx2", "avx_vnni", "amx_tile"})
    assert cpu.vector_extensions() == ["AVX2", "VNNI", "AMX"]
    monkeypatch.setattr(cpu, "cpu_flags", set)
    assert cpu.describe_cpu() == "Some EPYC: none of AVX2, AVX-512, VNNI, BF16, AMX"
