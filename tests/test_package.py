"""Package-level checks that live outside the notebooks: the built wheel imports without nbs/."""
import subprocess, sys, zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_imports_without_notebooks(tmp_path):
    out = tmp_path / "wheel"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(out)],
                   check=True)
    whl = next(out.glob("dyncompress-*.whl"))
    site = tmp_path / "site"
    zipfile.ZipFile(whl).extractall(site)
    assert not (site / "nbs").exists()
    names = sorted(p.name for p in (site / "dyncompress").glob("*.py"))
    assert {"config.py", "pooling.py", "projectors.py"} <= set(names)
    code = ("import dyncompress, dyncompress.pooling as p; "
            "assert dyncompress.__file__.startswith(%r); print(p.visual_token_count(1))" % str(site))
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "13312"
