"""Training on measured-like inputs (``--kind-a measured_like``) and the optional paired term (``--lambda-pair``)."""

import csv
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
h5py = pytest.importorskip("h5py")

from mantid_exp2sim.errors import InputDataError  # noqa: E402
from mantid_exp2sim.train import cli  # noqa: E402
from mantid_exp2sim.train import losses as L  # noqa: E402
from mantid_exp2sim.train.config import GanConfig  # noqa: E402
from mantid_exp2sim.train.data import SimulatorSource, data_from_config  # noqa: E402
from mantid_exp2sim.train.gan import GanTrainer  # noqa: E402
from mantid_exp2sim.train.patches import PatchSampler  # noqa: E402
from test_train_loop import TINY, TINY_ARGS, write_sim  # noqa: E402

pytestmark = pytest.mark.torch

SCALES = (200.0, 50.0)  # per-Ei scale of every sample: the upper 8 rows are Ei 0, the lower 8 Ei 1


def write_measured_like(path, n=12, shape=(16, 16), noise=0.0, seed=0):
    """Tiny measured-like file: ``write_sim``'s pairs plus ``measured_like = scale_ei * convolved
    (+ noise)``, the nuisance columns the reader needs and a root ``settings`` that marks it."""
    write_sim(path, n=n, shape=shape, seed=seed)
    rng = np.random.default_rng(seed + 1)
    names = ["scale_ei25", "scale_ei35", "count_level_ei25", "count_level_ei35", "twin_fraction"]
    with h5py.File(path, "a") as f:
        f.attrs["settings"] = json.dumps({"representation": "qe_slice", "measured_like": {"scale": None}})
        g = f["dimer"]
        rows = np.repeat(np.asarray(SCALES, dtype=np.float32), shape[0] // len(SCALES))[:, None]
        ml = g["convolved"][()] * rows + noise * rng.standard_normal((n,) + shape).astype(np.float32)
        g["measured_like"] = ml.astype(np.float32)
        g["nuisance"] = np.tile(np.array([*SCALES, 1.0, 1.0, 0.5]), (n, 1))
        g.attrs["nuisance_names"] = json.dumps(names)
    return str(path)


def test_measured_like_domain_reads_in_model_units(tmp_path):
    p = write_measured_like(tmp_path / "ml.h5")
    ml, conv = SimulatorSource(p, "measured_like"), SimulatorSource(p, "convolved")
    with h5py.File(p, "r") as f:
        raw = f["dimer"]["measured_like"][3]
    x = ml.read(3)
    # the per-Ei scale is divided out row block by row block: exactly the convolved twin again
    np.testing.assert_allclose(x, conv.read(3), rtol=1e-6, equal_nan=True)
    assert np.nanmax(np.abs(raw[:8] / SCALES[0] - x[:8])) < 1e-6 and np.nanmax(raw[8:]) > np.nanmax(x[8:])
    cfg = GanConfig(domain_a=[p], domain_b=[p], kind_a="measured_like", max_steps=2, **TINY)
    data = data_from_config(cfg)
    assert data.a.source.kind == "measured_like" and data.describe()["domain_a"]["kind"] == "measured_like"
    a, b = data.val_pairs[0]
    assert a.shape == b.shape == (16, 16)


def test_kind_a_measured_like_on_a_plain_file_is_refused(tmp_path):
    p = write_sim(tmp_path / "plain.h5", n=6)
    cfg = GanConfig(domain_a=[p], domain_b=[p], kind_a="measured_like", **TINY)
    with pytest.raises(InputDataError, match="no measured-like samples"):
        data_from_config(cfg)


def test_paired_term_is_zero_for_the_true_twin_and_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    b = torch.rand((2, 1, 8, 8), generator=g)
    valid = torch.ones_like(b)
    valid[:, :, :2] = 0
    target = torch.cat([b, torch.ones_like(b)], 1)
    assert float(L.paired_l1(b.clone(), target, valid)) == 0.0
    wrong = b + 0.25
    assert float(L.paired_l1(wrong, target, valid)) == pytest.approx(0.25, rel=1e-6)
    # a difference only in masked bins (of the source or of the target) does not count
    off = b.clone()
    off[:, :, :2] += 5.0
    assert float(L.paired_l1(off, target, valid)) == 0.0
    target_masked = target.clone()
    target_masked[:, 1, :, 6:] = 0
    off[..., 6:] += 5.0
    assert float(L.paired_l1(off, target_masked, valid)) == 0.0


def test_partner_patches_share_crop_and_flips_and_the_source_scale(tmp_path):
    p = write_sim(tmp_path / "sim.h5", n=6, shape=(24, 24))
    a, b = SimulatorSource(p, "convolved"), SimulatorSource(p, "unconvolved")
    kw = dict(seed=3, stream=0, flip_axes=(0, 1))
    plain = PatchSampler(a, np.arange(6), (16, 16), 3, **kw)
    paired = PatchSampler(a, np.arange(6), (16, 16), 3, partners=[b, a], **kw)
    for _ in range(3):
        main, twin, same = paired.next_batch_with_partners()
        np.testing.assert_array_equal(main, plain.next_batch())  # partners change nothing else
        np.testing.assert_array_equal(same, main)  # same source: the identical patch
        assert not np.allclose(twin[:, 0], main[:, 0])
    # the twin is divided by the source sample's scale: recover the raw unconvolved crop's sum
    from mantid_exp2sim.models.normalisation import intensity_scale

    one = PatchSampler(a, np.array([2]), (24, 24), 1, seed=0, stream=0, partners=[b])
    main, twin = one.next_batch_with_partners()
    np.testing.assert_allclose(twin[0, 0].sum() * intensity_scale(a.read(2)), np.nansum(b.read(2)), rtol=1e-4)
    with pytest.raises(InputDataError, match="does not match"):
        PatchSampler(a, np.arange(6), (16, 16), 1, seed=0, stream=0, partners=[SimulatorSource(write_sim(
            tmp_path / "other.h5", n=4), "unconvolved")])


def test_paired_training_on_measured_like_inputs_logs_the_paired_terms(tmp_path):
    torch.set_num_threads(1)
    p = write_measured_like(tmp_path / "ml.h5", n=12, noise=2.0)
    run = tmp_path / "run"
    rc = cli.main(["gan", "--out", str(run), "--domain-a", p, "--domain-b", p, "--kind-a", "measured_like",
                   "--paired", "--lambda-pair", "5", "--max-steps", "3", "--log-every", "1", *TINY_ARGS])
    assert rc == 0
    with open(run / "losses.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    for r in rows:
        assert float(r["g_a_pair"]) > 0 and float(r["g_b_pair"]) > 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["lambda_pair"] == 5.0 and cfg["paired"] and cfg["kind_a"] == "measured_like"


def test_unpaired_runs_log_a_zero_paired_term(tmp_path):
    torch.set_num_threads(1)
    p = write_sim(tmp_path / "sim.h5", n=12)
    cfg = GanConfig(domain_a=[p], domain_b=[p], max_steps=2, **TINY)
    assert cfg.lambda_pair == 0.0  # the paper's unpaired objective stays the default
    trainer = GanTrainer(cfg, data_from_config(cfg))
    row = trainer.train_step()
    assert row["g_a_pair"] == 0.0 and row["g_b_pair"] == 0.0 and np.isfinite(row["g_total"])
    assert trainer.sampler_a.partners == []


def test_lambda_pair_settings_are_validated(tmp_path):
    with pytest.raises(InputDataError, match="lambda_pair.*loss weights must be >= 0"):
        GanConfig(lambda_pair=-1.0, paired=True, **TINY).validate()
    with pytest.raises(InputDataError, match="needs paired samples.*--paired"):
        GanConfig(lambda_pair=1.0, **TINY).validate()
    GanConfig(lambda_pair=1.0, paired=True, **TINY).validate()
    # paired across two files: no twins to compare with
    p, q = write_sim(tmp_path / "a.h5", n=8), write_sim(tmp_path / "b.h5", n=8, seed=1)
    cfg = GanConfig(domain_a=[p], domain_b=[q], paired=True, lambda_pair=1.0, **TINY)
    with pytest.raises(InputDataError, match="one exp2sim-simulate file"):
        GanTrainer(cfg, data_from_config(cfg))


def test_cli_refuses_a_negative_lambda_pair_in_one_line(tmp_path, capsys):
    p = write_sim(tmp_path / "sim.h5", n=6)
    rc = cli.main(["gan", "--out", str(tmp_path / "run"), "--domain-a", p, "--domain-b", p, "--paired",
                   "--lambda-pair", "-2", *TINY_ARGS])
    err = capsys.readouterr().err
    assert rc != 0 and "lambda_pair" in err and "--lambda-pair" in err
