"""Two-process data-parallel training (torchrun, gloo on the CPU): replicas stay identical."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
h5py = pytest.importorskip("h5py")

pytestmark = [pytest.mark.torch, pytest.mark.distributed]

REPO = Path(__file__).resolve().parents[2]

# Runs the real CLI under torchrun; after training, every rank saves its own weights so the
# test can compare the replicas (the CLI itself only writes from rank 0).
WORKER = textwrap.dedent(
    """
    import os, sys
    import torch
    import mantid_exp2sim.train.gan as gan
    from mantid_exp2sim.train.cli import main

    out = sys.argv[1]
    original = gan.GanTrainer.fit

    def fit(self):
        summary = original(self)
        rank = self.dist.rank
        torch.save({k: v.state_dict() for k, v in self.nets.items()}, os.path.join(out, f"rank{rank}.pt"))
        torch.save({"a": self.sampler_a._order.tolist(), "world": self.dist.world_size},
                   os.path.join(out, f"order{rank}.pt"))
        return summary

    gan.GanTrainer.fit = fit
    sys.exit(main(sys.argv[2:]))
    """
)


def write_sim(path, n=24, shape=(16, 16)):
    """Tiny exp2sim-simulate file: B = sparse peaks, A = B blurred, a masked corner."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f.attrs.update(format="exp2sim-dataset", format_version=1, representation="qe_slice", seed=0)
        mask = np.zeros(shape, dtype=np.uint8)
        mask[:2, :3] = 1
        f["mask"] = mask
        g = f.create_group("dimer")
        b = rng.random((n,) + shape).astype(np.float32) * 0.1
        b[:, 8, 8] += 3.0
        a = np.stack([gaussian_filter(x, 1.0) for x in b]).astype(np.float32)
        a[:, mask.astype(bool)] = np.nan
        b[:, mask.astype(bool)] = np.nan
        g["convolved"], g["unconvolved"] = a, b
        g.attrs["complete"] = n
    return str(path)


@pytest.mark.slow
def test_two_process_training_keeps_replicas_identical(tmp_path):
    sim = write_sim(tmp_path / "sim.h5")
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    run = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(worker),
        str(tmp_path), "gan", "--domain-a", sim, "--domain-b", sim, "--out", str(run), "--max-steps", "4",
        "--patch-size", "16", "--batch-size", "2", "--ngf", "4", "--n-blocks", "1", "--ndf", "4",
        "--n-layers", "2", "--num-patches", "8", "--netf-nc", "8", "--val-samples", "2", "--threads", "1",
        "--log-every", "1", "--no-plot", "--device", "cpu",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    w0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    init = {k: v.state_dict() for k, v in _fresh_nets().items()}
    for net, state in w0.items():
        for key, value in state.items():
            assert torch.equal(value, w1[net][key]), f"{net}.{key} differs between ranks"
    # training changed the generators (the replicas are not merely both untouched)
    assert any(not torch.equal(w0["G_A"][k], init["G_A"][k]) for k in init["G_A"])
    # the ranks drew different samples (sharded), and only rank 0 wrote the run folder
    o0, o1 = torch.load(tmp_path / "order0.pt"), torch.load(tmp_path / "order1.pt")
    assert o0["world"] == 2 and not set(o0["a"]) & set(o1["a"])
    assert sorted(os.listdir(run)) == ["best_convolve.pt", "best_deconvolve.pt", "checkpoint.pt", "config.json",
                                       "losses.csv", "validation.csv"]
    from mantid_exp2sim.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(run)
    assert ckpt["step"] == 4 and ckpt["world_size"] == 2
    for key, value in ckpt["models"]["G_B"].items():
        assert torch.equal(value, w1["G_B"][key])


def _fresh_nets():
    from mantid_exp2sim.train.config import GanConfig
    from mantid_exp2sim.train.gan import build_networks

    torch.manual_seed(0)
    cfg = GanConfig(patch_size=[16, 16], ngf=4, n_blocks=1, ndf=4, n_layers=2, netf_nc=8)
    return build_networks(cfg)[0]
