"""The composite audio-language model: `audio_tower` -> `multi_modal_projector` -> `language_model`.

Named like transformers' audio-language models (Qwen2-Audio, LLaVA). The prompt holds
`num_audio_tokens` copies of the `<audio>` token for every recording (the collator expands each
`<audio>` placeholder of the text); their embeddings are replaced, in order, by the projected
audio features:

    input_ids (batch, seq) --embed--> (batch, seq, hidden)
    audio_features (n_audios, *feature shape) --tower--> (n_audios, frames', d_audio)
        --projector--> (n_audios, num_audio_tokens, hidden) --scatter into <audio> positions-->
    inputs_embeds (batch, seq, hidden) --language_model--> logits, loss

Audios are listed row by row, in placeholder order, so several audios per row (comparison tasks)
need nothing special. Text-only mode (`audio_tower=None`): no tower, no projector; the collator
strips the placeholders, which gives the "same LM and recipe, audio removed" baseline.

`ClinModel` is a `PreTrainedModel` so that `Trainer.save_model`/checkpoint resume handle it
(tied embeddings inside a plain nn.Module fail to save). LoRA wraps the LM with peft after
`post_init`; the tied-weight map is then re-pointed at the wrapped LM's parameter names.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel

from clinlm.models.audio_tower import build_audio_tower
from clinlm.models.projector import AudioProjector

PARTS = ("audio_tower", "multi_modal_projector", "language_model")


class ClinConfig(PretrainedConfig):
    model_type = "clinlm"

    def __init__(
        self,
        lm_config: dict[str, Any] | None = None,  # the LM's own config.to_dict() (with model_type)
        audio_tower: dict[str, Any] | None = None,  # tower spec (audio_tower.py); None = text-only
        projector: str = "mlp",  # "linear" | "mlp"
        num_audio_tokens: int = 8,  # prefix tokens per recording
        audio_token_id: int | None = None,
        lora: dict[str, Any] | None = None,  # peft LoraConfig kwargs; None = no LoRA
        **kwargs: Any,
    ):
        self.lm_config = lm_config
        self.audio_tower = audio_tower
        self.projector = projector
        self.num_audio_tokens = num_audio_tokens
        self.audio_token_id = audio_token_id
        self.lora = lora
        super().__init__(**kwargs)


def lm_from_config(lm_config: dict[str, Any]) -> PreTrainedModel:
    d = dict(lm_config)
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(d.pop("model_type"), **d))


class ClinModel(PreTrainedModel):
    config_class = ClinConfig
    base_model_prefix = "clinlm"
    main_input_name = "input_ids"

    def __init__(self, config: ClinConfig, language_model: PreTrainedModel | None = None, audio_tower: nn.Module | None = None):
        super().__init__(config)
        # post_init before the parts are attached: it would otherwise re-run weight initialisation
        # over them, and a pretrained LM or audio encoder must keep its weights.
        self.post_init()
        lm = language_model if language_model is not None else lm_from_config(config.lm_config)
        if config.audio_tower is not None:
            self.audio_tower = audio_tower if audio_tower is not None else build_audio_tower(config.audio_tower)
            self.multi_modal_projector = AudioProjector(
                self.audio_tower.hidden_size, lm.config.hidden_size, config.num_audio_tokens, config.projector
            )
            with torch.no_grad():  # audio tokens start at the size of text tokens (per-dimension std)
                self.multi_modal_projector.norm.weight.fill_(float(lm.get_input_embeddings().weight.std()))
        else:
            self.audio_tower = None
            self.multi_modal_projector = None
        inner = "language_model."
        if config.lora:
            from peft import LoraConfig, get_peft_model

            lm = get_peft_model(lm, LoraConfig(**config.lora))
            inner = "language_model.base_model.model."
        self.language_model = lm
        # Tell save/load which parameters are tied (lm_head <- embed_tokens), under their real names.
        base = lm.get_base_model() if config.lora else lm
        self.all_tied_weights_keys = {inner + k: inner + v for k, v in getattr(base, "all_tied_weights_keys", {}).items()}
        # Tied copies are not saved, so they are expected to be missing when a checkpoint is loaded.
        self._keys_to_ignore_on_save = set(self.all_tied_weights_keys)

    def _init_weights(self, module: nn.Module) -> None:
        pass  # parts initialise themselves (PyTorch defaults, or the LM's own init)

    # --- embeddings -------------------------------------------------------------------------
    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def encode_audio(self, audio_features: torch.Tensor) -> torch.Tensor:
        """(n_audios, *feature shape) -> (n_audios, num_audio_tokens, hidden)."""
        first = next(self.audio_tower.parameters())
        hidden = self.audio_tower(audio_features.to(first.device, first.dtype))  # (n_audios, frames', d_audio)
        return self.multi_modal_projector(hidden)

    def embed(self, input_ids: torch.Tensor, audio_features: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings with every run of <audio> tokens replaced by one recording's prefix."""
        embeds = self.get_input_embeddings()(input_ids)  # (batch, seq, hidden)
        slots = input_ids == self.config.audio_token_id  # (batch, seq)
        n_slots = int(slots.sum())
        n_audios = 0 if audio_features is None else int(audio_features.shape[0])
        if self.audio_tower is None:
            if n_slots or n_audios:
                raise ValueError(
                    f"this is a text-only model, but the batch has {n_slots} <audio> tokens and {n_audios} "
                    "audios: strip the placeholders (the collator does this for text-only models)"
                )
            return embeds
        per_row = slots.sum(1).tolist()
        if n_slots != n_audios * self.config.num_audio_tokens:
            raise ValueError(
                f"<audio> token count does not match the audios: {n_slots} tokens in the batch (per row "
                f"{per_row}) but {n_audios} audios x {self.config.num_audio_tokens} tokens each; every "
                "<audio> placeholder must be expanded to num_audio_tokens tokens and have one audio"
            )
        if n_audios:
            audio = self.encode_audio(audio_features)  # (n_audios, N, hidden)
            # Row-major order of the slots = row by row, placeholder by placeholder = audio order.
            embeds = embeds.masked_scatter(slots.unsqueeze(-1), audio.to(embeds.dtype).reshape(-1, embeds.shape[-1]))
        return embeds

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        audio_features: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        **kwargs: Any,
    ):
        if position_ids is None and attention_mask is not None:
            # Count positions from the first real token, so left-padded rows (generation) and
            # right-padded rows (training) see the same positions.
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        embeds = self.embed(input_ids, audio_features)
        return self.language_model(
            inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids, labels=labels, **kwargs
        )

    # --- freezing ---------------------------------------------------------------------------
    def freeze(self, parts: dict[str, bool]) -> None:
        """Freeze parts by name ({"audio_tower": True, ...}); LoRA keeps its own split of the LM."""
        unknown = set(parts) - set(PARTS)
        if unknown:
            raise ValueError(f"unknown parts to freeze {sorted(unknown)}; parts: {', '.join(PARTS)}")
        for name, frozen in parts.items():
            module = getattr(self, name)
            if module is None or not frozen:
                continue
            for p in module.parameters():
                p.requires_grad_(False)

    def trainable_summary(self) -> dict[str, tuple[int, int]]:
        """{part: (trainable parameters, all parameters)}."""
        out = {}
        for name in PARTS:
            module = getattr(self, name)
            if module is not None:
                ps = list(module.parameters())
                out[name] = (sum(p.numel() for p in ps if p.requires_grad), sum(p.numel() for p in ps))
        return out


AutoConfig.register(ClinConfig.model_type, ClinConfig)
