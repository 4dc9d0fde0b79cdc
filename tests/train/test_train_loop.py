"""The GAN training loop: learning, masking end to end, checkpoints, resume, CSV logs, stopping."""

import csv
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
h5py = pytest.importorskip("h5py")

from mantid_exp2sim.train import cli  # noqa: E402
from mantid_exp2sim.train.checkpoint import load_checkpoint  # noqa: E402
from mantid_exp2sim.train.config import GanConfig  # noqa: E402
from mantid_exp2sim.train.data import data_from_config  # noqa: E402
from mantid_exp2sim.train.gan import LOSS_COLUMNS, VALIDATION_COLUMNS, GanTrainer, lr_factor  # noqa: E402

pytestmark = pytest.mark.torch

TINY = dict(patch_size=[16, 16], batch_size=2, ngf=4, n_blocks=1, ndf=4, n_layers=2, num_patches=16, netf_nc=8,
            val_samples=2)
TINY_ARGS = ["--patch-size", "16", "--batch-size", "2", "--ngf", "4", "--n-blocks", "1", "--ndf", "4",
             "--n-layers", "2", "--num-patches", "16", "--netf-nc", "8", "--val-samples", "2", "--threads", "1",
             "--quiet", "--no-plot"]


def write_sim(path, n=24, shape=(16, 16), seed=0, garbage_in_mask=False):
    """Tiny exp2sim-simulate file (architecture.md layout): B = sparse peaks, A = B blurred."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, dtype=np.uint8)
    mask[:3, :5] = 1
    mask[10, 10:] = 1
    with h5py.File(path, "w") as f:
        f.attrs.update(format="exp2sim-dataset", format_version=1, representation="qe_slice", seed=seed)
        f["mask"] = mask
        g = f.create_group("dimer")
        g.attrs["label"] = 0
        b = rng.random((n,) + shape).astype(np.float32) * 0.1
        for i in range(n):
            for _ in range(2):
                b[i][tuple(rng.integers(0, s) for s in shape)] += 3.0
        a = np.stack([gaussian_filter(x, 1.0) for x in b]).astype(np.float32)
        m = mask.astype(bool)
        if garbage_in_mask:  # the file's mask, not the stored values, decides what is masked
            a[:, m] = rng.random(a[:, m].shape) * 1e4
            b[:, m] = -rng.random(b[:, m].shape) * 1e4
        else:
            a[:, m] = np.nan
            b[:, m] = np.nan
        g["convolved"], g["unconvolved"] = a, b
        g.attrs["complete"] = n
    return str(path)


def test_lr_schedule_constant_then_linear_to_zero():
    assert [lr_factor(s, 4, 8) for s in (0, 3, 4, 6, 8, 9)] == [1.0, 1.0, 1.0, 0.5, 0.0, 0.0]
    assert lr_factor(0, 0, 1) == 1.0 and lr_factor(1, 0, 1) == 0.0


def test_a_few_steps_lower_the_losses(tmp_path):
    torch.set_num_threads(1)
    p = write_sim(tmp_path / "sim.h5", n=40)
    cfg = GanConfig(domain_a=[p], domain_b=[p], max_steps=30, **TINY)
    trainer = GanTrainer(cfg, data_from_config(cfg))
    rows = [trainer.train_step() for _ in range(30)]
    first, last = rows[:5], rows[-5:]

    def mean(rs, *keys):
        return float(np.mean([sum(r[k] for k in keys) for r in rs]))

    assert mean(last, "d_total") < 0.9 * mean(first, "d_total")
    assert mean(last, "g_a_nce", "g_b_nce") < mean(first, "g_a_nce", "g_b_nce")
    assert trainer.step == 30
    # the learning rate followed the schedule (constant for 15 steps, then linear decay)
    assert rows[14]["lr"] == pytest.approx(2e-4) and rows[29]["lr"] == pytest.approx(2e-4 * 1 / 15)


def test_cycle_consistency_term_is_trained_only_when_weighted(tmp_path):
    torch.set_num_threads(1)
    p = write_sim(tmp_path / "sim.h5", n=40)
    for weight in (0.0, 10.0):
        cfg = GanConfig(domain_a=[p], domain_b=[p], max_steps=5, lambda_cyc=weight, **TINY)
        trainer = GanTrainer(cfg, data_from_config(cfg))
        terms = [r["g_a_cyc"] + r["g_b_cyc"] for r in (trainer.train_step() for _ in range(5))]
        # the generators start as the identity, so the first round trip is exact
        assert terms[0] == 0.0 and ((max(terms) == 0.0) if weight == 0 else (max(terms[1:]) > 0.0))


@pytest.mark.parametrize("lambda_cyc", [0.0, 10.0])
def test_values_in_masked_bins_change_no_loss(tmp_path, lambda_cyc):
    torch.set_num_threads(1)
    clean = write_sim(tmp_path / "nan.h5")
    dirty = write_sim(tmp_path / "garbage.h5", garbage_in_mask=True)
    results = []
    for p in (clean, dirty):
        cfg = GanConfig(domain_a=[p], domain_b=[p], max_steps=3, lambda_cyc=lambda_cyc, **TINY)
        trainer = GanTrainer(cfg, data_from_config(cfg))
        results.append(([trainer.train_step() for _ in range(3)], trainer.validate()))
    for r_clean, r_dirty in zip(results[0][0], results[1][0]):
        for key in LOSS_COLUMNS[1:-1]:
            assert r_clean[key] == r_dirty[key], key
    for key, value in results[0][1].items():
        assert value == pytest.approx(results[1][1][key], rel=1e-9, abs=1e-12), key


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    p = write_sim(tmp_path / "sim.h5")
    cfg = GanConfig(domain_a=[p], domain_b=[p], max_steps=5, **TINY)
    trainer = GanTrainer(cfg, data_from_config(cfg), tmp_path / "run")
    trainer.train_step()
    path = trainer.save_checkpoint()
    before = path.read_bytes()
    trainer.train_step()

    def broken_save(obj, fh, *a, **k):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        trainer.save_checkpoint()
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path / "run")) == ["checkpoint.pt", "losses.csv", "validation.csv"]
    ckpt = load_checkpoint(tmp_path / "run")  # a run folder works too; weights_only loading
    assert ckpt["step"] == 1 and ckpt["format"] == "exp2sim-gan-checkpoint"
    assert set(ckpt["models"]) == {"G_A", "G_B", "D_A", "D_B", "F_A", "F_B"}
    assert set(ckpt["optimizers"]) == {"G", "D", "F"} and "torch" in ckpt["rng"]


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    p = write_sim(tmp_path / "sim.h5")
    common = ["gan", "--domain-a", p, "--domain-b", p, "--max-steps", "8", "--log-every", "1",
              "--validate-every", "4", "--checkpoint-every", "100", *TINY_ARGS]
    full, part = tmp_path / "full", tmp_path / "part"
    assert cli.main([*common, "--out", str(full)]) == 0
    assert cli.main([*common, "--out", str(part), "--stop-at-step", "3"]) == 0
    assert load_checkpoint(part)["step"] == 3
    assert len(_rows(part / "losses.csv")) == 3
    assert cli.main(["gan", "--out", str(part), "--resume", "--quiet"]) == 0
    assert load_checkpoint(part)["step"] == 8

    a, b = _rows(full / "losses.csv"), _rows(part / "losses.csv")
    assert list(a[0]) == LOSS_COLUMNS
    assert [int(r["step"]) for r in b] == list(range(1, 9))
    for ra, rb in zip(a[3:], b[3:]):
        for key in LOSS_COLUMNS[1:-1]:
            assert float(ra[key]) == pytest.approx(float(rb[key]), rel=1e-6, abs=1e-7), (ra["step"], key)
    va, vb = _rows(full / "validation.csv"), _rows(part / "validation.csv")
    assert list(va[0]) == VALIDATION_COLUMNS
    assert [r["step"] for r in va] == ["4", "8"] and va[-1]["step"] == vb[-1]["step"]
    assert float(va[-1]["psnr_deconvolve"]) == pytest.approx(float(vb[-1]["psnr_deconvolve"]), rel=1e-6)
    ckpt_a, ckpt_b = load_checkpoint(full), load_checkpoint(part)
    for k, v in ckpt_a["models"]["G_A"].items():
        torch.testing.assert_close(v, ckpt_b["models"]["G_A"][k], rtol=1e-5, atol=1e-6)
    saved = json.loads((full / "config.json").read_text())
    assert saved["max_steps"] == 8 and saved["patch_size"] == [16, 16]
    # the best held-out PSNR per task is kept as best_<task>.pt, also across a resume
    for task in ("deconvolve", "convolve"):
        psnr = [float(r[f"psnr_{task}"]) for r in va]
        best = load_checkpoint(full / f"best_{task}.pt")
        assert best["step"] == int(va[int(np.argmax(psnr))]["step"])
        assert best["best_validation"][task] == pytest.approx(max(psnr), rel=1e-9)
        resumed = load_checkpoint(part / f"best_{task}.pt")
        assert resumed["step"] == best["step"]
        assert resumed["best_validation"][task] == pytest.approx(max(psnr), rel=1e-6)
    # process-wide torch settings are restored after an in-process run
    assert not torch.are_deterministic_algorithms_enabled()


def test_time_limit_and_stop_request_end_with_a_checkpoint(tmp_path):
    torch.set_num_threads(1)
    p = write_sim(tmp_path / "sim.h5")
    cfg = GanConfig(domain_a=[p], domain_b=[p], max_steps=50, max_minutes=1e-6, plot=True, **TINY)
    trainer = GanTrainer(cfg, data_from_config(cfg), tmp_path / "run")
    summary = trainer.fit()
    assert summary["reason"] == "max_minutes" and summary["step"] == 1
    assert load_checkpoint(tmp_path / "run")["step"] == 1
    assert (tmp_path / "run" / "losses.png").is_file()
    cfg2 = GanConfig(domain_a=[p], domain_b=[p], max_steps=50, plot=False, **TINY)
    t2 = GanTrainer(cfg2, data_from_config(cfg2), tmp_path / "run2")
    t2.stop_requested = True
    assert t2.fit()["reason"] == "stop requested"
    assert load_checkpoint(tmp_path / "run2")["step"] == 1
    # `touch RUN_DIR/STOP` stops a background run cleanly (and the file is consumed)
    t3 = GanTrainer(cfg2, data_from_config(cfg2), tmp_path / "run3")
    (tmp_path / "run3").mkdir()
    (tmp_path / "run3" / "STOP").touch()
    assert t3.fit()["reason"] == "stop requested"
    assert load_checkpoint(tmp_path / "run3")["step"] == 1 and not (tmp_path / "run3" / "STOP").exists()
    # atomic writes keep the usual file mode (mkstemp alone would leave 0600)
    from mantid_exp2sim.train.checkpoint import default_file_mode

    for name in ("checkpoint.pt", "losses.csv", "config.json"):
        assert (tmp_path / "run3" / name).stat().st_mode & 0o777 == default_file_mode()


@pytest.mark.gpu
def test_mixed_precision_training_on_the_gpu(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    p = write_sim(tmp_path / "sim.h5")
    cfg = GanConfig(domain_a=[p], domain_b=[p], max_steps=4, device="gpu", amp="on", plot=False, **TINY)
    trainer = GanTrainer(cfg, data_from_config(cfg), tmp_path / "run")
    assert trainer.use_amp and trainer.device.type == "cuda"
    summary = trainer.fit()
    assert summary["step"] == 4 and np.isfinite(summary["validation"]["psnr_deconvolve"])
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt["scaler"]["scale"] > 0
    # a GPU checkpoint continues on the CPU
    cpu = GanConfig(**{**cfg.to_dict(), "device": "cpu", "max_steps": 6})
    t2 = GanTrainer(cpu, data_from_config(cpu))
    t2.load_state_dict(ckpt)
    assert np.isfinite(t2.train_step()["g_total"])


def test_only_a_better_held_out_psnr_replaces_the_best_state(tmp_path):
    torch.set_num_threads(1)
    p = write_sim(tmp_path / "sim.h5")
    cfg = GanConfig(domain_a=[p], domain_b=[p], max_steps=4, plot=False, **TINY)
    trainer = GanTrainer(cfg, data_from_config(cfg), tmp_path / "run")
    (tmp_path / "run").mkdir()

    def written(metrics):
        return sorted(path.name for path in trainer._keep_best(metrics))

    assert written({"psnr_deconvolve": 20.0, "psnr_convolve": 15.0}) == ["best_convolve.pt", "best_deconvolve.pt"]
    trainer.step = 2
    assert written({"psnr_deconvolve": 21.0, "psnr_convolve": 14.0}) == ["best_deconvolve.pt"]
    trainer.step = 3
    assert written({"psnr_deconvolve": float("nan"), "psnr_convolve": 15.0}) == []
    assert written({"psnr_convolve": 16.0}) == ["best_convolve.pt"]
    assert load_checkpoint(tmp_path / "run" / "best_deconvolve.pt")["step"] == 2
    assert load_checkpoint(tmp_path / "run" / "best_convolve.pt")["best_validation"] == {
        "deconvolve": 21.0, "convolve": 16.0}
