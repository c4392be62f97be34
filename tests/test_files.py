"""Results are written atomically, with the mode the umask gives (issue 22, N3: every result
was 0600 whatever the umask)."""
import os
import stat
import subprocess
import sys

import pytest

from tryon.files import umask, write_atomically

WRITE = "import sys; from tryon.files import write_atomically; write_atomically(sys.argv[1], b'x')"


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_result_gets_the_mode_of_the_umask(tmp_path, mask, mode):
    path = tmp_path / "sub" / f"r{mask:o}.png"
    subprocess.run([sys.executable, "-c", f"import os; os.umask({mask}); {WRITE}", str(path)], check=True)
    assert stat.S_IMODE(path.stat().st_mode) == mode and path.read_bytes() == b"x"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


def test_umask_reads_without_changing_it(tmp_path):
    before = os.umask(0o027)
    try:
        assert umask() == 0o027 and umask() == 0o027
        write_atomically(tmp_path / "a", b"1")
        assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o640
    finally:
        os.umask(before)
