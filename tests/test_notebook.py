"""notebooks/interactive_scaling.ipynb, executed headless (nbclient) on a tiny config.

The notebook starts its own local two-node Ray cluster inside the kernel process, so it does not meet the
`ray.init(num_cpus=2)` of other tests in this process. Checks: the run committed episodes and verified, the
simulator pool grew when the GPU node joined, the tracks image was drawn, and no Ray process outlived it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "interactive_scaling.ipynb"

# One host makes ~1.2 of these episodes a second on 2 cores. The new node's host is alive ~6 s after the first
# commit here, but on a loaded 2-core CI machine it was seen still starting 19 s after the node joined, when a
# 40-episode run had already ended. 100 episodes keep work queued for over a minute of one host; the notebook
# stops the run 3 s after the pool grew (the hosts then skip what is left: 200 made the test take ~3 min).
PARAMETERS = {"EPISODES": 100, "WIDTH": 32, "HEIGHT": 32, "STEPS_PER_SEGMENT": 10, "SHARD_SIZE": 1,
              "MAX_GPUS": 2, "WORKERS_PER_GPU": 1, "POLL_S": 0.5, "STOP_AFTER_GROWTH_S": 3.0, "TIMEOUT_S": 180}


@pytest.mark.ray
@pytest.mark.timeout(600)
def test_interactive_scaling_notebook(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    import psutil  # an ipykernel dependency

    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # the local cluster, never a real one
    nb = nbformat.read(NOTEBOOK, as_version=4)
    tagged = [i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, "the notebook needs exactly one cell tagged `parameters`"
    report_path = tmp_path / "report.json"
    params = {**PARAMETERS, "OUTPUT": str(tmp_path / "ds"), "REPORT": str(report_path)}
    nb.cells.insert(tagged[0] + 1, nbformat.v4.new_code_cell(
        "\n".join(f"{k} = {v!r}" for k, v in params.items()), metadata={"tags": ["injected-parameters"]}))

    seen: dict = {}

    def last_cell_done(cell, cell_index, execute_reply):  # the kernel is still up here
        if cell_index == len(nb.cells) - 1:
            kernel = psutil.Process(client.km.provisioner.pid)
            seen["cmd"] = kernel.cmdline()
            seen["children"] = kernel.children(recursive=True)

    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=300, on_cell_executed=last_cell_done,
                                     resources={"metadata": {"path": str(REPO)}})
    client.execute()

    assert seen["cmd"][0] == sys.executable, f"the kernel is not this interpreter: {seen['cmd']}"
    report = json.loads(report_path.read_text())
    history = "\n".join(json.dumps(row) for row in report["history"])
    assert report["accepted"] >= 1 and report["shards"] >= 1 and report["verify_ok"] is True, report
    # the feed read every committed episode, and the little model learned from it
    assert report["feed_position"] == report["accepted"] and report["feed_batches"] >= 1, report
    first, last = report["feed_loss_first_last"]
    assert last <= first, report
    assert report["hosts_before"] >= 1, history
    assert report["hosts_after"] > report["hosts_before"], f"the pool did not grow:\n{history}"
    pngs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs
            if "image/png" in o.get("data", {})]
    assert len(pngs) == 1 and report["tracks_image"]["shape"][1] == 4 * report["tracks_image"]["shape"][0]
    errors = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs if o.output_type == "error"]
    assert not errors

    # cluster.shutdown() in the notebook ended every process the local cluster started
    _, alive = psutil.wait_procs(seen["children"], timeout=10)
    assert not alive, [(p.pid, p.name()) for p in alive]
