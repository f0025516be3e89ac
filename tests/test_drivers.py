"""Driver notebooks (unnumbered, papermill-parameterized): one `parameters` cell whose every line papermill can read."""
import json, re
from pathlib import Path
import papermill as pm
import pytest

NBS = Path(__file__).resolve().parents[1] / "nbs"
UNNUMBERED = sorted(p for p in NBS.glob("*.ipynb") if not re.match(r"\d", p.name) and p.name != "index.ipynb")
# an unnumbered notebook with code is a driver; one of markdown only is a docs page (e.g. seed_differences)
DRIVERS = [p for p in UNNUMBERED if any(c["cell_type"] == "code" for c in json.loads(p.read_text())["cells"])]


def test_drivers_exist():
    assert {p.stem for p in DRIVERS} >= {"pretrain", "finetune", "evaluate", "sweep"}


@pytest.mark.parametrize("nb", DRIVERS, ids=lambda p: p.stem)
def test_driver_parameters(nb):
    d = json.loads(nb.read_text())
    assert d["metadata"]["kernelspec"]["name"] == "python3"
    cells = [c for c in d["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{nb.name}: expected one cell tagged parameters, found {len(cells)}"
    assigned = [l for l in "".join(cells[0]["source"]).splitlines() if re.match(r"\w+\s*(:[^=]+)?=", l)]
    params = pm.inspect_notebook(str(nb))
    assert len(params) == len(assigned), f"{nb.name}: papermill read {sorted(params)} of {len(assigned)} lines"
    assert all(p["help"] for p in params.values()), f"{nb.name}: every parameter needs a comment"
    src = "".join("".join(c["source"]) for c in d["cells"] if c["cell_type"] == "code")
    assert "#| export" not in src and "default_exp" not in src, f"{nb.name}: driver notebooks export nothing"


def test_runs_go_to_one_place_from_any_directory(tmp_path, monkeypatch):
    "Started from another directory, a driver writes under $DC_RUNS (else the repository's runs/), not under the cwd."
    runs, elsewhere = tmp_path / "runs", tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("DC_RUNS", str(runs))
    pm.execute_notebook(str(NBS / "pretrain.ipynb"), str(tmp_path / "pretrain.ipynb"), cwd=str(elsewhere),
                        parameters=dict(max_steps=1, opts='{"save_steps": 100}'), progress_bar=False, kernel_name="python3")
    assert (runs / "pretrain" / "mm_projector" / "mm_projector.bin").exists()
    assert (runs / "synthetic" / "synthetic.json").exists()          # the tiny preset's default data, same root
    assert list(elsewhere.iterdir()) == []                            # nothing in the working directory
