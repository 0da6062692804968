"""Adventitious-sound channels: one value per log-mel frame that says "a crackle-like transient"
or "a wheeze-like tone" is here, appended to the log-mel frames by `features.extras`.

Why: crackles are explosive transients of ~5-25 ms and wheezes continuous tones of >= 100 ms
(the CORSA definitions, Sovijarvi et al. 2000). A 64 ms log-mel window smears a 5 ms crackle
into its breath-sound background, and a tone's prominence (peak over the other bands of the same
frame) is a max over frequency that a small 1-D conv tower over mel channels learns only slowly.
Both are cheap to measure directly, so the built-in tower gets them as two extra channels and
still learns everything else from the log-mel frames. They are signal measurements, not labels:
they work the same on any recording.

- `transient`: high-pass (150 Hz) the band-passed signal, take the RMS of 4 ms sub-frames, divide
  by its running median over 120 ms (the local background), and keep the log of the largest ratio
  within each hop. A crackle gives ~2-10x; breath noise stays near 1.
- `tonality`: per frame, the log of the peak over the median power spectrum between 150 and
  1000 Hz (the wheeze band). A tone gives a high peak ratio; breath noise a low one.
"""

from __future__ import annotations

import numpy as np

EXTRAS = ("transient", "tonality")

SUBFRAME_S = 0.004  # crackle-scale sub-frame
BACKGROUND_S = 0.120  # running-median background for the transient ratio
HIGHPASS_HZ = 150.0  # below this, heart sounds and breath rumble dominate
WHEEZE_BAND_HZ = (150.0, 1000.0)


def transient_ratio(x: np.ndarray, sr: int, hop: int, frames: int) -> np.ndarray:
    """(frames,) log of the largest 4 ms RMS / local-median ratio within each hop (centred frames)."""
    from scipy.ndimage import median_filter
    from scipy.signal import butter, sosfiltfilt

    sub = max(1, int(round(SUBFRAME_S * sr)))
    if len(x) > 30:
        x = sosfiltfilt(butter(4, HIGHPASS_HZ, btype="highpass", fs=sr, output="sos"), x)
    n = len(x) // sub
    out = np.zeros(frames, dtype=np.float32)
    if n < 2:
        return out
    rms = np.sqrt(np.mean(np.square(x[: n * sub].reshape(n, sub)), axis=1)) + 1e-8  # (n,)
    background = median_filter(rms, size=max(3, int(round(BACKGROUND_S / SUBFRAME_S))), mode="nearest")
    ratio = np.log(rms / background)  # (n,) ~0 for steady noise, > 1 for a crackle
    # Frame k of the log-mel is centred at sample k * hop: pool the sub-frames within half a hop.
    centres = (np.arange(n) * sub + sub / 2) / hop
    index = np.clip(np.round(centres).astype(int), 0, frames - 1)
    np.maximum.at(out, index, ratio.astype(np.float32))
    return out


def tonality(power: np.ndarray, freqs_hz: np.ndarray) -> np.ndarray:
    """(frames,) log(peak / median) of the power spectrum in the wheeze band; power: (bins, frames)."""
    band = (freqs_hz >= WHEEZE_BAND_HZ[0]) & (freqs_hz <= WHEEZE_BAND_HZ[1])
    if band.sum() < 3:
        return np.zeros(power.shape[1], dtype=np.float32)
    p = power[band] + 1e-12  # (bins in band, frames)
    return np.log(p.max(0) / np.median(p, 0)).astype(np.float32)
