"""The suite runs as if pytest were started directly, whatever `make test` was given."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_make_command_line_variables_do_not_reach_the_tests_own_make_calls(tmp_path):
    # make exports its command-line variables to the recipe; the recipe here does what `make test` does (start a
    # Python that loads the suite's conftest) and prints what a test's own `make antmaze` call would inherit.
    probe = ("import os, tests.conftest; "
             "print([os.environ.get(k) for k in ('ARGS', 'TEST_WORKERS', 'MAKEFLAGS', 'MAKELEVEL', 'KEEP_ME')])")
    makefile = tmp_path / "Makefile"
    makefile.write_text(f"all:\n\t@cd {ROOT} && {sys.executable} -c \"{probe}\"\n")
    out = subprocess.run(["make", "-s", "-f", str(makefile), "ARGS=-k x --durations=5", "TEST_WORKERS=3"],
                         capture_output=True, text=True, check=True, env={"PATH": os.environ["PATH"], "KEEP_ME": "1"})
    assert out.stdout.strip().splitlines()[-1] == "[None, None, None, None, '1']", out.stdout + out.stderr
