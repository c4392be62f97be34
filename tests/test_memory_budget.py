"""tryon serve refuses a --max-concurrent whose worst case does not fit this machine's memory."""
import subprocess
import sys
from pathlib import Path

import pytest
from tryon.serve.memory_budget import GB, available_bytes, check_room_for


def meminfo(tmp_path, available_gb):
    path = tmp_path / "meminfo"
    path.write_text(f"MemTotal:       99999999 kB\nMemFree:               1 kB\n"
                    f"MemAvailable:   {int(available_gb * 2**20)} kB\n")
    return path


def test_a_concurrency_that_fits_passes_and_one_that_does_not_says_what_fits(tmp_path):
    machine = meminfo(tmp_path, 11)  # 1.3 GB of models + 8 x 1.2 GB = 10.9 GB
    assert available_bytes(machine) == 11 * GB
    check_room_for(8, machine)
    with pytest.raises(ValueError, match=r"^--max-concurrent 9 can need 12\.1 GB \(1\.2 GB per request for 40 MP "
                                         r"photos, 1\.3 GB for the models\) and this machine has 11\.0 GB available: "
                                         r"use --max-concurrent 8 or less$"):
        check_room_for(9, machine)


def test_one_request_is_always_allowed_and_a_machine_that_does_not_say_is_not_refused(tmp_path):
    small = meminfo(tmp_path, 0.5)
    check_room_for(1, small)
    with pytest.raises(ValueError, match="use --max-concurrent 1 or less"):
        check_room_for(2, small)
    assert available_bytes(tmp_path / "missing") is None
    check_room_for(1000, tmp_path / "missing")


def test_serve_refuses_at_start_in_one_line_with_exit_4(tmp_path):
    """Before the models load: this folder has none, which would be exit 3."""
    tryon = Path(sys.executable).parent / "tryon"
    done = subprocess.run([str(tryon), "serve", "--models", str(tmp_path), "--max-concurrent", "100000", "--port", "1"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 4, done.stderr
    assert done.stderr.startswith("error: --max-concurrent 100000 can need") and done.stderr.count("\n") == 1
