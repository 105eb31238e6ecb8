"""A small version of the super-resolution evidence
(scripts/evidence_srcnn.py): an integral SRCNN ×3 trained briefly with
random widths beats bicubic upscaling on held-out photos, and resampled to
60 % of its channels with no fine-tuning it stays within 0.5 dB of its full
width (the issue's target)."""
import numpy as np
import mindspore as ms
from mindspore import nn

from inn_ms.data.sr import photo_pairs, random_patches, sr_photos
from inn_ms.tasks import image_quality
from inn_ms.train import RandomWidthTrainer, WidthSampler
from model_zoo import create_model

SCALE = 3
STEPS, BATCH, PATCH = 300, 16, 21


def test_integral_srcnn_beats_bicubic_and_prunes_to_60_percent():
    ms.set_context(mode=ms.GRAPH_MODE)
    train, _ = sr_photos(SCALE)
    test = photo_pairs(("camera", "chelsea", "coins"), SCALE, max_side=150)  # held out, centre crops
    rng = np.random.default_rng(0)
    x, y = random_patches(train, STEPS * BATCH, PATCH, SCALE, rng)
    model = create_model("srcnn", residual=True)
    opt = nn.Adam(model.trainable_params(), learning_rate=nn.cosine_decay_lr(2e-4, 2e-3, STEPS, 1, 1))
    # widths 50 % and 100 % (the script's default trains three levels; each compiles a train step, 4 s more
    # of CPU here for the same outcome): 60 % is never trained
    trainer = RandomWidthTrainer(model, nn.MSELoss(), opt, WidthSampler(model, low=0.5, levels=2), seed=0)
    trainer.fit(x, y, epochs=1, batch_size=BATCH, progress=False)

    ms.set_context(mode=ms.PYNATIVE_MODE)
    bicubic = image_quality(test, SCALE)
    full = image_quality(test, SCALE, model.discretize())
    model.resize(keep=0.6)
    assert dict(model.sizes) == {"c1": 38, "c2": 19}
    pruned = image_quality(test, SCALE, model.discretize())
    gains = (full["psnr"] - bicubic["psnr"], pruned["psnr"] - full["psnr"])
    # Measured with three widths (50/75/100 %) and seeds 0 / 1 / 2 (data,
    # init and widths): full width +0.17 / +0.23 / +0.18 dB over bicubic
    # (27.47 dB); 60 % width +0.01 / -0.18 / -0.05 dB from full. With the
    # two widths here, seed 0: +0.15 dB, 60 % width -0.01 dB. The margin
    # 0.05 dB is a third of the smallest gain; the 0.5 dB tolerance is the
    # issue's target, ~3x the largest drop measured.
    assert gains[0] > 0.05, (bicubic, full)
    assert full["ssim"] > bicubic["ssim"]
    assert abs(gains[1]) < 0.5, (full, pruned)


def test_plain_srcnn_defaults_and_explicit_options_win():
    """``--plain`` brings its own defaults (README, "Super resolution": the
    settings measured to meet the targets without the residual); options
    given on the command line are kept; the residual network's are unchanged."""
    import importlib.util
    import os
    path = os.path.join(os.path.dirname(__file__), "..", "scripts", "evidence_srcnn.py")
    spec = importlib.util.spec_from_file_location("evidence_srcnn", path)
    ev = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ev)
    from argparse import Namespace
    unset = dict(lr=None, control_ratio=None, offset=None, last_scale=None)
    plain = ev.resolve_defaults(Namespace(plain=True, **unset))
    assert (plain.lr, plain.control_ratio, plain.offset, plain.last_scale) == (3e-3, 0.25, 0.5, 0.01)
    residual = ev.resolve_defaults(Namespace(plain=False, **unset))
    assert (residual.lr, residual.control_ratio, residual.offset) == (1e-3, 0.5, 0.0)
    mixed = ev.resolve_defaults(Namespace(plain=True, **{**unset, "control_ratio": 0.5}))
    assert mixed.control_ratio == 0.5 and mixed.lr == 3e-3
