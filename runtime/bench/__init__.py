"""`tryon bench`: per-stage latency, memory and FLOPs, records for comparing machines."""
