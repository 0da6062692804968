"""The multi-modal projector: audio hidden states -> a fixed number of LM "prefix tokens".

(batch, frames', d_audio) -> adaptive average and max pooling over time, side by side ->
(batch, num_audio_tokens, 2 * d_audio) -> linear or 2-layer MLP -> (batch, num_audio_tokens, d_lm).

Pooling to exactly `num_audio_tokens` bounds the prompt length whatever the recording's length
(StethoLM uses only 4 prefix tokens); each token summarises one stretch of the recording, so a
little of the time order survives. The average keeps what lasts (rhythm, a murmur in every
beat); the maximum keeps what is brief (a 150 ms wheeze or a few 5 ms crackles in a 20 s
recording), which an average over seconds washes out (on simulated wheezes a tower read through
the average scored AUROC 0.57, through the maximum 0.85).

Finding tokens (`findings=K`, a warmed-up tower whose last K channels are its findings head's
per-frame probabilities): one more token per finding, built from that channel's maximum and mean
over time. With `finding_bins=0` each statistic moves the token along a learned direction
(slot + max * u + mean * v). With `finding_bins=B` each statistic is encoded piecewise-linearly
over B learned level vectors at 0, 1/(B-1), ..., 1 (the numerical-feature embedding of Gorishniy et
al., 2022): a murmur channel averaging 0.2 (no murmur) and 0.6 (murmur) then give the LM two
different vectors to tell apart, where along one direction they differ by a small shift the LM
must threshold precisely.
"""

from __future__ import annotations

import torch
from torch import nn


class AudioProjector(nn.Module):
    def __init__(self, audio_size: int, lm_size: int, num_tokens: int, kind: str = "mlp", findings: int = 0,
                 finding_bins: int = 0, time_token_dropout: float = 0.0):
        super().__init__()
        if kind not in ("linear", "mlp"):
            raise ValueError(f"model.projector must be 'linear' or 'mlp', not {kind!r}")
        if num_tokens < 1:
            raise ValueError(f"model.num_audio_tokens must be >= 1, not {num_tokens}")
        self.num_tokens = num_tokens
        if kind == "linear":
            self.net = nn.Linear(2 * audio_size, lm_size)
        else:
            self.net = nn.Sequential(nn.Linear(2 * audio_size, lm_size), nn.GELU(), nn.Linear(lm_size, lm_size))
        self.findings = int(findings)
        if self.findings:
            if self.findings >= audio_size:
                raise ValueError(f"{self.findings} finding tokens need a tower with more than {self.findings} output channels")
            self.finding_slots = nn.Parameter(torch.randn(self.findings, lm_size) * 0.02)  # (K, d_lm)
            self.finding_bins = int(finding_bins)
            if self.finding_bins == 1 or self.finding_bins < 0:
                raise ValueError(f"model.finding_bins must be 0 (linear) or >= 2, not {finding_bins}")
            if self.finding_bins:
                self.finding_levels = nn.Parameter(torch.randn(self.findings, 2, self.finding_bins, lm_size) * 0.02)  # (K, [max, mean], B, d_lm)
            else:
                self.finding_directions = nn.Parameter(torch.randn(self.findings, 2, lm_size) * 0.02)  # (K, [max, mean], d_lm)
        if not 0.0 <= time_token_dropout < 1.0:
            raise ValueError(f"model.time_token_dropout must be in [0, 1), not {time_token_dropout}")
        if time_token_dropout and not self.findings:
            raise ValueError("model.time_token_dropout needs finding tokens (model.finding_tokens=true): without them "
                             "a dropped recording would leave the language model nothing to hear")
        self.time_token_dropout = float(time_token_dropout)
        # Normalised output at the scale of the LM's token embeddings (ClinModel sets the gain).
        self.norm = nn.LayerNorm(lm_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        h = hidden.transpose(1, 2)  # (batch, d_audio, frames')
        avg = nn.functional.adaptive_avg_pool1d(h, self.num_tokens)  # (batch, d_audio, num_tokens)
        peak = nn.functional.adaptive_max_pool1d(h, self.num_tokens)
        pooled = torch.cat([avg, peak], dim=1).transpose(1, 2)  # (batch, num_tokens, 2 * d_audio)
        tokens = self.net(pooled)  # (batch, num_tokens, d_lm)
        if self.findings:
            probs = hidden[..., -self.findings:]  # (batch, frames', K): the findings head's sigmoid outputs
            summary = torch.stack([probs.amax(dim=1), probs.mean(dim=1)], dim=-1)  # (batch, K, 2)
            if self.finding_bins:
                levels = torch.arange(self.finding_bins, device=summary.device, dtype=summary.dtype)  # (B,)
                # Triangular weights: each value splits between its two nearest levels.
                weights = (1 - (summary.clamp(0, 1).unsqueeze(-1) * (self.finding_bins - 1) - levels).abs()).clamp(min=0)  # (batch, K, 2, B)
                finding_tokens = self.finding_slots + torch.einsum("bksl,ksld->bkd", weights, self.finding_levels)
            else:
                finding_tokens = self.finding_slots + torch.einsum("bks,ksd->bkd", summary, self.finding_directions)
            tokens = torch.cat([tokens, finding_tokens], dim=1)  # (batch, num_tokens + K, d_lm)
        tokens = self.norm(tokens)
        if self.training and self.time_token_dropout:
            # Whole recordings lose their time tokens (zeroed) in training, so the language model has to
            # answer from the finding tokens alone that often: without it, it read "crackles?" off the
            # time tokens, where crackles and wheezes are entangled, and ignored the finding tokens
            # (zeroing them at test time left crackle AUROC unchanged; RESULTS.md, quickstart).
            keep = torch.rand(tokens.shape[0], 1, 1, device=tokens.device) >= self.time_token_dropout  # (batch, 1, 1)
            time_part = tokens[:, : self.num_tokens] * keep.to(tokens.dtype)
            tokens = torch.cat([time_part, tokens[:, self.num_tokens :]], dim=1)
        return tokens
