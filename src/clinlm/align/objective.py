"""The alignment objective: an alignment term between audio and report embeddings + a masked-audio term.

    loss = align_weight * L_align + ssl_weight * L_ssl

L_align (`train.alignment`):
- `cka`: 1 - linear CKA(A, T) between the batch's projected audio embeddings A (batch, d_t) and
  the teacher's report embeddings T (batch, d_t) (Kornblith et al. 2019; what AcuLa's released code
  uses). CKA compares the two batches' similarity structures, so it needs no negatives and is
  invariant to rotations and isotropic scaling of either side.
- `infonce`: symmetric InfoNCE (CLIP) between unit-length A and T with a learnable temperature
  (logit scale initialised to 1/0.07, capped at 100). Many recordings share one report wording,
  so a batch holds exact copies of a report embedding; they need no special case: the copies'
  columns have equal logits and share the softmax mass, which gives exactly the loss of the
  multi-positive target (a test checks this), so a copy is never pushed away as a negative.

L_ssl (`train.ssl`):
- `masked_patch`: spans of the input's time axis are set to zero (the mean of standardised
  features) and a linear head reconstructs them from the encoder's hidden frames; mean squared
  error on the masked frames only (MAE-style). Hidden frame j covers input steps [j*s, (j+1)*s),
  s = ceil(input steps / hidden frames), so each hidden frame predicts its own (s x features) patch.
  Works for any encoder whose input has a time axis (log-mel (T, mels), Whisper (mels, T), a
  waveform (samples,)); the alignment embedding is taken from the same masked pass (masking then
  also acts as augmentation), so one forward pass serves both terms.
- `none`.

Every function returns plain tensors; `AlignModel.forward` returns the named parts
(`align_cka` or `align_infonce`, `ssl_masked_patch`, `loss`) so the Trainer logs each by name.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

ALIGNMENTS = ("cka", "infonce")
SSL_TERMS = ("masked_patch", "none")


def linear_cka(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Linear CKA between x (n, p) and y (n, q): ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)."""
    xc = x - x.mean(0, keepdim=True)
    yc = y - y.mean(0, keepdim=True)
    cross = (yc.T @ xc).pow(2).sum()
    return cross / ((xc.T @ xc).norm() * (yc.T @ yc).norm() + eps)


def cka_loss(audio: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    return 1.0 - linear_cka(audio, text)


def info_nce(audio: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE between audio (n, d) and text (n, d); pair i is (audio i, text i)."""
    a = nn.functional.normalize(audio, dim=-1)
    t = nn.functional.normalize(text, dim=-1)
    logits = logit_scale.exp() * a @ t.T  # (n, n): audio i vs report j
    target = torch.arange(len(a), device=a.device)
    return (nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.T, target)) / 2


def time_axis(x: torch.Tensor, n_features: int | None) -> int:
    """The time axis of a batch of encoder inputs: (batch, samples) -> 1; (batch, A, B) -> the axis
    that is not the feature axis (the one whose size is `n_features`, e.g. Whisper's mel bins)."""
    if x.dim() == 2:
        return 1
    if x.dim() == 3:
        return 2 if (n_features is not None and x.shape[1] == n_features and x.shape[2] != n_features) else 1
    raise ValueError(f"masked_patch needs inputs of shape (batch, time) or (batch, A, B), got {tuple(x.shape)}")


def span_mask(n_frames: int, batch: int, ratio: float, span: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(batch, n_frames) bool: about `ratio` of the frames masked, in runs of `span` frames."""
    n_spans = max(1, math.ceil(n_frames / span))
    k = max(1, round(ratio * n_spans))
    scores = torch.rand(batch, n_spans, generator=generator)
    chosen = scores.argsort(1)[:, :k]  # k random spans per row
    spans = torch.zeros(batch, n_spans, dtype=torch.bool)
    spans.scatter_(1, chosen, True)
    return spans.repeat_interleave(span, dim=1)[:, :n_frames]


def to_patches(x: torch.Tensor, t_axis: int, n_frames: int) -> tuple[torch.Tensor, int]:
    """x (batch, ...) -> (batch, n_frames, stride * features) with time cut into n_frames patches."""
    x = x.movedim(t_axis, 1)  # (batch, T, *features)
    if x.dim() == 2:
        x = x.unsqueeze(-1)
    steps = x.shape[1]
    stride = math.ceil(steps / n_frames)
    pad = stride * n_frames - steps
    if pad:
        x = nn.functional.pad(x, (0, 0, 0, pad))
    return x.reshape(x.shape[0], n_frames, stride * x.shape[-1]), stride


def apply_mask(x: torch.Tensor, t_axis: int, frame_mask: torch.Tensor, stride: int) -> torch.Tensor:
    """Zero the input steps under masked hidden frames; frame_mask (batch, n_frames)."""
    steps = x.shape[t_axis]
    step_mask = frame_mask.repeat_interleave(stride, dim=1)[:, :steps]  # (batch, T)
    shape = [x.shape[0]] + [1] * (x.dim() - 1)
    shape[t_axis] = steps
    return x.masked_fill(step_mask.reshape(shape).to(x.device), 0.0)


class AlignModel(nn.Module):
    """The trainable part: encoder + audio head (+ SSL head, + temperature); the teacher is outside.

    forward(features (batch, *input shape), target (batch, d_teacher)) ->
    {"loss", "align_<term>", "ssl_<term>"}; `embed` gives the time-mean encoder output (batch, d).
    """

    def __init__(self, encoder: nn.Module, teacher_dim: int, example: torch.Tensor, cfg: dict[str, Any], n_features: int | None):
        super().__init__()
        self.encoder = encoder
        self.alignment = str(cfg.get("alignment", "cka"))
        self.ssl = str(cfg.get("ssl", "masked_patch"))
        if self.alignment not in ALIGNMENTS:
            raise ValueError(f"train.alignment={self.alignment!r}; choose one of {', '.join(ALIGNMENTS)}")
        if self.ssl not in SSL_TERMS:
            raise ValueError(f"train.ssl={self.ssl!r}; choose one of {', '.join(SSL_TERMS)}")
        self.align_weight = float(cfg.get("align_weight", 1.0))
        self.ssl_weight = float(cfg.get("ssl_weight", 1.0))
        self.mask_ratio = float(cfg.get("mask_ratio", 0.3))
        self.mask_span = int(cfg.get("mask_span", 2))
        self.n_features = n_features
        d = int(encoder.hidden_size)
        hidden = int(cfg.get("head_hidden", 256))
        # Audio head: time-mean encoder output -> the teacher's space (batch, d_teacher).
        self.audio_head = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, teacher_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07))) if self.alignment == "infonce" else None
        # The SSL head's size comes from one example: hidden frames and the input patch per frame.
        with torch.no_grad():
            was = encoder.training
            encoder.eval()
            frames = encoder(example[None]).shape[1]
            encoder.train(was)
        self.t_axis = time_axis(example[None], n_features)
        patch, self.stride = to_patches(example[None], self.t_axis, frames)
        self.ssl_head = nn.Linear(d, patch.shape[-1]) if self.ssl == "masked_patch" else None

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, *input shape) -> (batch, d): the encoder's hidden frames averaged over time."""
        return self.encoder(features).mean(1)

    def forward(self, features: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        parts: dict[str, torch.Tensor] = {}
        inputs, mask, patches = features, None, None
        if self.ssl == "masked_patch" and self.training:
            n_frames = self._frames(features)
            patches, _ = to_patches(features, self.t_axis, n_frames)  # (batch, frames, stride * features)
            mask = span_mask(n_frames, len(features), self.mask_ratio, self.mask_span).to(features.device)
            inputs = apply_mask(features, self.t_axis, mask, self.stride)
        hidden = self.encoder(inputs)  # (batch, frames, d)
        audio = self.audio_head(hidden.mean(1))  # (batch, d_teacher)
        target = target.to(audio.dtype)
        if self.alignment == "cka":
            parts["align_cka"] = cka_loss(audio, target)
        else:
            scale = self.logit_scale.clamp(max=math.log(100.0))
            parts["align_infonce"] = info_nce(audio, target, scale)
        loss = self.align_weight * parts[f"align_{self.alignment}"]
        if mask is not None:
            if hidden.shape[1] != mask.shape[1]:  # an encoder whose frame count is not ceil(steps / stride)
                f = hidden.shape[1]
                mask = nn.functional.pad(mask, (0, max(0, f - mask.shape[1])))[:, :f]
                patches = nn.functional.pad(patches, (0, 0, 0, max(0, f - patches.shape[1])))[:, :f]
            recon = self.ssl_head(hidden)  # (batch, frames, stride * features)
            err = (recon - patches.to(recon.dtype)).pow(2).mean(-1)  # (batch, frames)
            parts["ssl_masked_patch"] = (err * mask).sum() / mask.sum().clamp(min=1)
            loss = loss + self.ssl_weight * parts["ssl_masked_patch"]
        parts["loss"] = loss
        return parts

    def _frames(self, features: torch.Tensor) -> int:
        steps = features.shape[self.t_axis]
        return math.ceil(steps / self.stride)
