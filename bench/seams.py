"""What the joins of folded WaveNet generation cost: level and spectral change around them.

Folded audio is compared with unfolded audio of the same mels at the same places: a join that
dips the level (phase-misaligned segments cancelling in a linear cross-fade) or clicks
(a step in the waveform: broadband spectral flux) shows as a difference at the joins that is
absent at control positions half way between them. Levels are ratios of summed energies
(see :func:`level_db`). Waveforms are 1-D float arrays.
"""

from __future__ import annotations

import numpy as np
import scipy.signal

EPS = 1e-10  # energy floor (-100 dB) so silent windows stay finite


def window_energy(wav: np.ndarray, centres: list[int], width: int) -> np.ndarray:
    """Mean square of ``wav`` over ``width`` samples around each centre -> (N,)."""
    half = width // 2
    return np.array([np.mean(wav[max(0, c - half): c + width - half].astype(np.float64) ** 2)
                     for c in centres])


def level_db(energy: np.ndarray, reference: np.ndarray) -> float:
    """``10 log10(sum(energy) / sum(reference))`` over paired windows. A ratio of sums, not a
    mean of per-window dB: a cross-fade of two independent signals has the same expected
    energy as one of them but a steadier envelope, which alone lifts a mean of logs."""
    return float(10 * np.log10((energy.sum() + EPS) / (reference.sum() + EPS)))


def _bootstrap_se(fn, *arrays: np.ndarray, rounds: int = 200) -> float:
    """Standard error of ``fn(*arrays)`` by resampling the (paired) entries with replacement."""
    rng = np.random.default_rng(0)
    n = arrays[0].shape[0]
    stats = [fn(*(a[idx] for a in arrays)) for idx in (rng.integers(0, n, n) for _ in range(rounds))]
    return float(np.std(stats))


def spectral_flux(wav: np.ndarray, n_fft: int = 256, hop: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Positive log-spectral flux per STFT frame and each frame's centre sample: a click
    raises every bin at once. ``(n_frames,)`` flux (mean over bins of the rise in log
    magnitude), ``(n_frames,)`` centres."""
    _, times, spec = scipy.signal.stft(wav, nperseg=n_fft, noverlap=n_fft - hop, boundary=None,
                                       padded=False)
    log_mag = np.log(np.abs(spec) + 1e-5)  # (bins, frames)
    flux = np.maximum(np.diff(log_mag, axis=1), 0.0).mean(axis=0)  # (frames - 1,)
    centres = (times[1:] - hop / 2).astype(np.int64)  # between the two frames' centres
    return flux, centres


def flux_near(wav: np.ndarray, centres: list[int], width: int) -> np.ndarray:
    """Mean spectral flux of the frames centred within ``width`` samples of each centre."""
    flux, at = spectral_flux(wav)
    out = []
    for c in centres:
        near = np.abs(at - c) <= width // 2
        out.append(flux[near].mean() if near.any() else np.nan)
    return np.array(out)


def controls(joins: list[int], n_samples: int) -> list[int]:
    """Positions half way between consecutive joins (and the clip ends): away from any join."""
    edges = [0, *joins, n_samples]
    return [(a + b) // 2 for a, b in zip(edges, edges[1:], strict=False)]


def seam_report(folded: list[np.ndarray], unfolded: list[np.ndarray], joins: list[list[int]],
                overlap: int, width: int) -> dict[str, float]:
    """Level and flux of folded relative to unfolded audio around the joins' cross-fades
    (centres ``join + overlap // 2``, ``width`` samples) and at control positions.

    ``join_dip_db`` (= ``seam_level_db`` - ``control_level_db``, with its bootstrap standard
    error) is the dip (negative) or bump a join adds; ``seam_flux_ratio`` /
    ``control_flux_ratio`` > 1 means joins add spectral change (a click)."""
    seam_f, seam_u, ctrl_f, ctrl_u, flux = [], [], [], [], {k: [] for k in ("sf", "su", "cf", "cu")}
    for f, u, js in zip(folded, unfolded, joins, strict=True):
        if not js:
            continue
        at = [j + overlap // 2 for j in js]
        ctrl = controls(js, f.shape[0])
        seam_f.append(window_energy(f, at, width))
        seam_u.append(window_energy(u, at, width))
        ctrl_f.append(window_energy(f, ctrl, width))
        ctrl_u.append(window_energy(u, ctrl, width))
        for key, wav, where in (("sf", f, at), ("su", u, at), ("cf", f, ctrl), ("cu", u, ctrl)):
            flux[key].append(flux_near(wav, where, width))
    sf, su, cf, cu = (np.concatenate(x) for x in (seam_f, seam_u, ctrl_f, ctrl_u))
    seam, ctrl = level_db(sf, su), level_db(cf, cu)
    se = np.hypot(_bootstrap_se(level_db, sf, su), _bootstrap_se(level_db, cf, cu))
    fx = {k: np.nanmean(np.concatenate(v)) for k, v in flux.items()}
    return {
        "joins": int(sum(len(js) for js in joins)),
        "seam_level_db": seam,
        "control_level_db": ctrl,
        "join_dip_db": seam - ctrl,
        "join_dip_db_se": float(se),
        "seam_flux_ratio": float(fx["sf"] / fx["su"]),
        "control_flux_ratio": float(fx["cf"] / fx["cu"]),
    }


def fade_report(triples: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Level of each cross-fade's output relative to its two inputs over the same samples,
    from ``(tail, head, faded)`` per join: free of the content's own variation (all three
    cover the same stretch), so a fade that cancels phase-misaligned inputs shows at that very
    join. ``fade_level_db``: ratio of sums over all joins; ``_p5``/``_p95``: per-join spread."""
    out = np.array([np.mean(f.astype(np.float64) ** 2) for _, _, f in triples])
    inputs = np.array([0.5 * (np.mean(t.astype(np.float64) ** 2) + np.mean(h.astype(np.float64) ** 2))
                       for t, h, _ in triples])
    per_join = 10 * np.log10((out + EPS) / (inputs + EPS))
    return {"fade_level_db": level_db(out, inputs),
            "fade_level_db_p5": float(np.percentile(per_join, 5)),
            "fade_level_db_p95": float(np.percentile(per_join, 95))}
