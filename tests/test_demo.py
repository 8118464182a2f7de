"""The demo command, run as a person would, and without the embedded servers."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.helper_process import run_helper


def test_demo_mints_once_then_answers_from_the_cache() -> None:
    result = run_helper("demo", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout
    assert "answer (minted" in output and "answer (cached" in output
    assert "Quay saw 1 exchange(s) and the issuer 1 token request(s)" in output
    # Tokens are shown shortened, never whole.
    assert not re.search(r"eyJ[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{20,}\.", output)
    assert "Traceback" not in output + result.stderr


def test_demo_without_the_embedded_servers_says_so_before_anything_else() -> None:
    hide = (
        "import sys; sys.modules['quay_sandbox'] = None; "
        "from docker_credential_quayfed.cli import main; sys.exit(main(['demo']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", hide], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert done.stdout == ""  # no banner before the reason
    assert "the demo needs the embedded servers" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
