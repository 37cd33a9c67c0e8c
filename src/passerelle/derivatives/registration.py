"""Affine template-to-image registration with SimpleITK, deterministic and coarse-to-fine.

Mattes mutual information on a fixed random sample (fixed seed) and a fixed thread count: the
same inputs give the same transform, bit for bit, on the same build.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk

from passerelle.errors import PasserelleError


class RegistrationError(PasserelleError):
    """The image cannot be registered; the message is the quarantine reason."""


@dataclass(frozen=True)
class RegParams:
    shrink: tuple[int, ...] = (4, 2)
    smoothing_mm: tuple[float, ...] = (4.0, 2.0)
    sampling: float = 0.1
    iterations: int = 200
    bins: int = 32
    seed: int = 20261202
    threads: int = 1
    # Mattes MI is negative; a value above this means the template never locked on.
    max_metric: float = -0.3

    @classmethod
    def from_config(cls, cfg: dict[str, Any], threads: int = 1) -> RegParams:
        return cls(
            shrink=tuple(cfg["shrink"]),
            smoothing_mm=tuple(cfg["smoothing_mm"]),
            sampling=cfg["sampling"],
            iterations=cfg["iterations"],
            seed=cfg["seed"],
            threads=threads,
            max_metric=cfg["max_metric"],
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "engine": f"SimpleITK {sitk.Version_VersionString()}",
            "transform": "affine",
            "metric": f"Mattes mutual information, {self.bins} bins",
            "sampling": f"random {self.sampling:g}, seed {self.seed}",
            "shrink_factors": list(self.shrink),
            "smoothing_mm": list(self.smoothing_mm),
            "iterations": self.iterations,
            "max_metric": self.max_metric,
        }


@dataclass(frozen=True)
class Registration:
    transform: sitk.Transform
    metric: float

    def matrix(self) -> list[list[float]]:
        """The fixed-to-moving affine (LPS, mm) as 4x4, for records."""
        a = sitk.AffineTransform(self.transform)
        m = np.eye(4)
        m[:3, :3] = np.asarray(a.GetMatrix()).reshape(3, 3)
        c, t = np.asarray(a.GetCenter()), np.asarray(a.GetTranslation())
        m[:3, 3] = t + c - m[:3, :3] @ c
        return np.round(m, 6).tolist()


def as_float(img: sitk.Image) -> sitk.Image:
    return sitk.Cast(img, sitk.sitkFloat32)


def coarse(img: sitk.Image, target_mm: float = 2.0) -> sitk.Image:
    """Block-average to about target_mm per voxel (no-op for already coarse images)."""
    factors = [max(1, round(target_mm / s)) for s in img.GetSpacing()]
    return sitk.BinShrink(img, factors) if max(factors) > 1 else img


def _run(
    fixed: sitk.Image,
    moving: sitk.Image,
    init: sitk.Transform,
    p: RegParams,
    shrink: tuple[int, ...],
    smoothing: tuple[float, ...],
    fixed_mask: sitk.Image | None = None,
) -> tuple[sitk.Transform, float]:
    reg = sitk.ImageRegistrationMethod()
    if fixed_mask is not None:
        reg.SetMetricFixedMask(fixed_mask)
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=p.bins)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(p.sampling, p.seed)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0,
        minStep=1e-4,
        numberOfIterations=p.iterations,
        relaxationFactor=0.6,
        gradientMagnitudeTolerance=1e-6,
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(list(shrink))
    reg.SetSmoothingSigmasPerLevel(list(smoothing))
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetInitialTransform(init, inPlace=False)
    try:
        tx = reg.Execute(fixed, moving)
    except RuntimeError as exc:
        last = str(exc).strip().splitlines()[-1][:120]
        raise RegistrationError(f"registration failed ({last})") from None
    return tx, float(reg.GetMetricValue())


def _flatten(tx: sitk.Transform) -> sitk.Transform:
    """One transform from Execute's composite (initial transform not in place)."""
    if isinstance(tx, sitk.CompositeTransform) and tx.GetNumberOfTransforms() == 1:
        return tx.GetNthTransform(0).Downcast()
    return tx.Downcast() if hasattr(tx, "Downcast") else tx


def _eroded(fg: sitk.Image, mm: float) -> sitk.Image:
    radius = [max(1, round(mm / s)) for s in fg.GetSpacing()]
    return sitk.BinaryErode(sitk.BinaryFillhole(fg), radius)


def head_core(img: sitk.Image, min_ml: float = 200.0) -> sitk.Image:
    """Mostly brain: the bright foreground (Otsu) eroded 12 mm past scalp and skull.

    Where Otsu splits the head (fat-bright contrasts, 2 mm images) little is left; then the
    whole head (above 10% of the 99th percentile) eroded 20 mm.
    """
    voxel_ml = float(np.prod(img.GetSpacing())) / 1000
    core = _eroded(sitk.OtsuThreshold(img, 0, 1), 12.0)
    if sitk.GetArrayViewFromImage(core).sum() * voxel_ml >= min_ml:
        return core
    level = 0.1 * float(np.percentile(sitk.GetArrayViewFromImage(img), 99))
    return _eroded(sitk.Cast(img > level, sitk.sitkUInt8), 20.0)


def register(
    fixed: sitk.Image, moving: sitk.Image, p: RegParams, brain_only: bool = False
) -> Registration:
    """Find the affine that maps fixed (image) points onto moving (template) points.

    brain_only: the moving template is skull-stripped, so the metric and the initial centring
    look only at the image's head core.
    """
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(p.threads)
    # Work on ~2 mm copies: the pyramid then smooths a few hundred thousand voxels, not millions.
    fixed, moving = coarse(as_float(fixed)), coarse(as_float(moving))
    mask = head_core(fixed) if brain_only else None
    init = sitk.CenteredTransformInitializer(
        fixed if mask is None else sitk.Mask(fixed, mask),
        moving,
        sitk.Similarity3DTransform(),
        sitk.CenteredTransformInitializerFilter.MOMENTS,
    )
    # A similarity stage first: with 7 parameters the coarse levels cannot shear into a local
    # optimum; the affine stage then refines at the finest level only.
    sim, _ = _run(fixed, moving, init, p, p.shrink, p.smoothing_mm, mask)
    sim = sitk.Similarity3DTransform(_flatten(sim))
    affine = sitk.AffineTransform(3)
    affine.SetMatrix(sim.GetMatrix())
    affine.SetTranslation(sim.GetTranslation())
    affine.SetCenter(sim.GetCenter())
    # Brain to brain needs the ~2 mm level too: an affine misfit shows at the frontal pole.
    last = (p.shrink[-1], 1) if brain_only else p.shrink[-1:]
    smooth = (p.smoothing_mm[-1], 1.0) if brain_only else p.smoothing_mm[-1:]
    tx, metric = _run(fixed, moving, affine, p, last, smooth, mask)
    result = Registration(sitk.AffineTransform(_flatten(tx)), metric)
    # A skull-stripped template shares less information with a head: a looser bar.
    bar = p.max_metric / 6 if brain_only else p.max_metric
    if not np.isfinite(metric) or metric > bar:
        raise RegistrationError(f"registration metric {metric:.3f} past the threshold {bar:g}")
    scale = abs(np.linalg.det(np.asarray(result.matrix())[:3, :3]))
    if not 0.33 < scale < 3.0:
        raise RegistrationError(
            f"registration gave an implausible scale (volume ratio {scale:.2f})"
        )
    return result


def refine(
    fixed: sitk.Image, moving: sitk.Image, start: Registration, mask: sitk.Image, p: RegParams
) -> Registration:
    """One more affine pass from start, the metric restricted to mask (on the fixed grid)."""
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(p.threads)
    fixed, moving = coarse(as_float(fixed)), coarse(as_float(moving))
    mask = sitk.Resample(mask, fixed, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    tx, metric = _run(
        fixed, moving, sitk.AffineTransform(start.transform), p, (2, 1), (2.0, 1.0), mask
    )
    return Registration(sitk.AffineTransform(_flatten(tx)), metric)


def from_matrix(m: np.ndarray) -> sitk.AffineTransform:
    tx = sitk.AffineTransform(3)
    tx.SetMatrix([float(v) for v in np.asarray(m)[:3, :3].ravel()])
    tx.SetTranslation([float(v) for v in np.asarray(m)[:3, 3]])
    return tx
