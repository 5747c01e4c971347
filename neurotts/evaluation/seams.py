"""What the joins of folded WaveNet generation cost: level and spectral change around them.

Folded audio is compared with unfolded audio of the same mels at the same places: a join that
dips the level (phase-misaligned segments cancelling in a linear cross-fade) or clicks
(a step in the waveform: broadband spectral flux) shows as a difference at the joins that is
absent at control positions half way between them. Waveforms are 1-D float arrays.
"""

from __future__ import annotations

import numpy as np
import scipy.signal

EPS = 1e-10  # energy floor (-100 dB) so silent windows stay finite


def window_energy_db(wav: np.ndarray, centres: list[int], width: int) -> np.ndarray:
    """Mean-square level in dB of ``wav`` over ``width`` samples around each centre -> (N,)."""
    half = width // 2
    return np.array([10 * np.log10(np.mean(wav[max(0, c - half): c + width - half] ** 2) + EPS)
                     for c in centres])


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

    ``seam_level_db`` - ``control_level_db`` is the dip (negative) or bump a join adds;
    ``seam_flux_ratio`` / ``control_flux_ratio`` > 1 means joins add spectral change."""
    seam_db, ctrl_db, seam_flux, ctrl_flux, ref_seam_flux, ref_ctrl_flux = [], [], [], [], [], []
    for f, u, js in zip(folded, unfolded, joins, strict=True):
        if not js:
            continue
        at = [j + overlap // 2 for j in js]
        ctrl = controls(js, f.shape[0])
        seam_db.append(window_energy_db(f, at, width) - window_energy_db(u, at, width))
        ctrl_db.append(window_energy_db(f, ctrl, width) - window_energy_db(u, ctrl, width))
        seam_flux.append(flux_near(f, at, width))
        ref_seam_flux.append(flux_near(u, at, width))
        ctrl_flux.append(flux_near(f, ctrl, width))
        ref_ctrl_flux.append(flux_near(u, ctrl, width))
    cat = np.concatenate
    return {
        "joins": int(sum(len(js) for js in joins)),
        "seam_level_db": float(np.mean(cat(seam_db))),
        "control_level_db": float(np.mean(cat(ctrl_db))),
        "seam_level_db_se": float(np.std(cat(seam_db)) / np.sqrt(cat(seam_db).size)),
        "seam_flux_ratio": float(np.nanmean(cat(seam_flux)) / np.nanmean(cat(ref_seam_flux))),
        "control_flux_ratio": float(np.nanmean(cat(ctrl_flux)) / np.nanmean(cat(ref_ctrl_flux))),
    }


def fade_level_db(tail: np.ndarray, head: np.ndarray, faded: np.ndarray) -> float:
    """Level of a cross-fade's output relative to its two inputs over the same samples:
    ``10 log10(E[faded] / mean(E[tail], E[head]))``. Free of the content's own variation (all
    three cover the same stretch), so a fade that cancels phase-misaligned inputs shows as a
    negative value at that very join."""
    inputs = 0.5 * (np.mean(tail**2) + np.mean(head**2))
    return float(10 * np.log10((np.mean(faded**2) + EPS) / (inputs + EPS)))
