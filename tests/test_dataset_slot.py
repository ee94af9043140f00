"""Two makers of one local dataset: the second waits, then stops without touching the first's files."""

import threading

import pytest

from pex_jax.data.minari import dataset_dir, load_dataset
from pex_jax.datagen import pointmaze
from pex_jax.datagen.dataset_slot import dataset_slot, lock_path
from pex_jax.errors import DatasetExistsError

ID = "tt/race-v0"


@pytest.fixture(autouse=True)
def _minari_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "datasets"))


def _in_thread(fn):
    """Run `fn` in a thread; the returned dict gets its result or exception."""
    out: dict = {}

    def target():
        try:
            out["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


def test_a_second_maker_waits_for_the_first_then_refuses_and_the_dataset_stays_intact(monkeypatch, capsys):
    inside, go = threading.Event(), threading.Event()
    register = pointmaze._register

    def held_register():  # the first maker pauses inside its slot, before collecting
        if not inside.is_set():
            inside.set()
            assert go.wait(30)
        register()

    monkeypatch.setattr(pointmaze, "_register", held_register)
    make = lambda: pointmaze.generate_pointmaze("umaze", steps=400, dataset_id=ID, ref_episodes=1,  # noqa: E731
                                                progress=False)
    first, first_out = _in_thread(make)
    assert inside.wait(30)
    second, second_out = _in_thread(make)
    second.join(0.5)
    assert second.is_alive(), "the second maker must wait while the first holds the dataset"
    go.set()
    first.join(60)
    second.join(60)
    assert first_out == {"result": ID}
    assert isinstance(second_out.get("error"), DatasetExistsError)
    assert "another process is making this dataset; waiting" in capsys.readouterr().err
    assert len(load_dataset(ID)[0]) == 400


def test_a_failure_inside_the_slot_removes_only_its_own_half_written_directory():
    other = dataset_dir("tt/other-v0") / "data"
    other.mkdir(parents=True)
    with pytest.raises(RuntimeError, match="collection failed"), dataset_slot(ID) as path:
        (path / "data").mkdir(parents=True)
        raise RuntimeError("collection failed")
    assert not dataset_dir(ID).exists()
    assert other.is_dir()
    assert lock_path(ID).parent.name.startswith(".")  # hidden: Minari's listing skips it


def test_the_slot_replaces_a_leftover_and_refuses_a_finished_dataset_unless_overwriting():
    leftover = dataset_dir(ID)
    leftover.mkdir(parents=True)  # an interrupted run: no data/ inside
    with dataset_slot(ID) as path:
        assert not path.exists()
        (path / "data").mkdir(parents=True)
    with pytest.raises(DatasetExistsError, match="already exists.*--overwrite"), dataset_slot(ID):
        pass
    assert (dataset_dir(ID) / "data").is_dir()
    with dataset_slot(ID, overwrite=True) as path:
        assert not path.exists()


def test_skip_existing_cli_reports_a_dataset_made_meanwhile_as_skipped(monkeypatch, capsys):
    def made_meanwhile(*args, **kwargs):
        raise DatasetExistsError(f"dataset {ID!r} already exists")

    monkeypatch.setattr(pointmaze, "generate_pointmaze", made_meanwhile)
    argv = ["--maze=umaze", f"--dataset-id={ID}", "--steps=300", "--no-progress"]
    assert pointmaze.main([*argv, "--skip-existing"]) == 0
    assert f"{ID}: made meanwhile by another process, skipped" in capsys.readouterr().out
    with pytest.raises(DatasetExistsError):
        pointmaze.main(argv)
