"""The committed result tables follow from the committed run directories (experiments/results.py)."""

import shutil

from experiments import results
from pex_jax.runner.run_dir import lock_run_dir, runs_in_use

DOCS = results.ROOT / results.RESULTS


def test_every_committed_table_follows_from_its_run_directories(capsys):
    assert results.main(["--check"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "follow from their run directories" in out


def test_a_hand_edited_table_is_reported_stale_with_the_command_that_rewrites_it(tmp_path, capsys):
    name, table = "antmaze-mechanism-umaze", "antmaze_mechanism/umaze.md"
    (tmp_path / "antmaze_mechanism").mkdir()
    shutil.copyfile(DOCS / table, tmp_path / table)
    assert results.main(["--check", "--only", name, "--docs", str(tmp_path)]) == 0
    capsys.readouterr()

    text = (tmp_path / table).read_text()
    (tmp_path / table).write_text(text.replace("|", "| 1", 1))
    assert results.main(["--check", "--only", name, "--docs", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"stale: docs/results/{table}" in err
    assert f"--only {name}" in err
    assert "mechanism_antmaze.py --task umaze --from-json" in err
    assert (DOCS / table).read_text() != (tmp_path / table).read_text()  # the committed table is untouched


def test_a_run_directory_held_by_a_live_process_counts_as_in_use(tmp_path):
    run = tmp_path / "study" / "umaze" / "pex"
    assert runs_in_use(tmp_path) == []
    with lock_run_dir(run):
        (run / "metrics.jsonl").write_text("")  # keep the directory (and its lock file) after the block
        assert runs_in_use(tmp_path) == [run]
    assert (run / ".lock").exists() and runs_in_use(tmp_path) == []  # the lock file stays, unheld


def test_an_unknown_result_name_is_refused_with_the_choices(capsys):
    assert results.main(["--check", "--only", "antmaze-tables"]) == 2
    err = capsys.readouterr().err
    assert "unknown result(s) antmaze-tables" in err
    assert "antmaze-paper" in err


def test_every_listed_table_and_run_directory_is_committed():
    for r in results.TABLES:
        assert (DOCS / r.table).is_file(), r.table
        for rel in r.reads:
            assert (DOCS / rel).exists(), rel
