"""Unpaired GAN training with the energy-aware generator (``generator = "energy-stack"``)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("h5py")

from mantid_exp2sim.errors import InputDataError  # noqa: E402
from mantid_exp2sim.models.energy_stack_generator import EnergyStackGenerator  # noqa: E402
from mantid_exp2sim.train.config import PRESETS, GanConfig  # noqa: E402
from mantid_exp2sim.train.data import data_from_config  # noqa: E402
from mantid_exp2sim.train.gan import GanTrainer  # noqa: E402
from test_train_loop import write_sim  # noqa: E402

pytestmark = pytest.mark.torch

TINY = dict(generator="energy-stack", patch_size=[80, 80], batch_size=1, ngf=2, n_blocks=1, stem_kernel=3, ndf=4,
            n_layers=2, num_patches=8, netf_nc=8, val_samples=2)


def test_unpaired_training_steps_update_the_energy_stack_generators(tmp_path):
    torch.set_num_threads(1)
    p = write_sim(tmp_path / "sim.h5", n=8, shape=(120, 160))  # 3 Ei x 4 windows of 40x40 tiles
    cfg = GanConfig(domain_a=[p], domain_b=[p], max_steps=3, **TINY)
    assert not cfg.paired  # the paper's unpaired objective: A and B from disjoint halves
    trainer = GanTrainer(cfg, data_from_config(cfg))
    g = trainer.nets["G_A"]
    assert isinstance(g, EnergyStackGenerator) and g.tile == 40
    before = {k: v.clone() for k, v in g.state_dict().items()}
    batch = trainer.sampler_a.next_batch()
    assert batch.shape == (1, 2, 80, 80)
    rows = [trainer.train_step() for _ in range(2)]
    assert all(np.isfinite(r["g_total"]) and np.isfinite(r["d_total"]) for r in rows)
    assert any(not torch.equal(before[k], v) for k, v in g.state_dict().items())
    val = trainer.validate()  # whole held-out mosaics through the generators
    assert np.isfinite(val["psnr_deconvolve"])


def test_patches_start_on_tile_borders_and_sizes_are_checked(tmp_path):
    p = write_sim(tmp_path / "sim.h5", n=4, shape=(120, 160))
    cfg = GanConfig(domain_a=[p], domain_b=[p], max_steps=2, **TINY)
    trainer = GanTrainer(cfg, data_from_config(cfg))
    assert trainer.sampler_a.align == 40
    with pytest.raises(InputDataError, match="multiples of 40"):
        GanConfig(**{**TINY, "patch_size": [64, 64]}).validate()
    with pytest.raises(InputDataError, match="ndim 2"):
        GanConfig(**{**TINY, "ndim": 3, "patch_size": [80, 80, 80]}).validate()
    GanConfig(**PRESETS["pcsmo-2d-energy"]).validate()
