"""The composite model: one tower + projector per media kind -> `language_model`.

Named like transformers' multimodal models (Qwen2-Audio, LLaVA): `audio_tower` ->
`multi_modal_projector` for recordings, `ecg_tower` -> `ecg_projector` for multi-lead ECG signals,
`vision_tower` -> `vision_projector` for images (the table of kinds is `models/media.py`). The
prompt holds `num_<kind>_tokens` copies of the kind's token for every item (the collator expands
each `<audio>` / `<ecg>` / `<image>` placeholder of the text); their embeddings are replaced, in
order, by the projected features:

    input_ids (batch, seq) --embed--> (batch, seq, hidden)
    audio_features (n_audios, *feature shape) --audio_tower--> (n_audios, frames', d_audio)
        --multi_modal_projector--> (n_audios, num_audio_tokens, hidden) --scatter into <audio> slots
    ecg_features (n_ecgs, samples, leads) --ecg_tower--> --ecg_projector--> <ecg> slots
    pixel_values (n_images, 3, H, W) --vision_tower--> --vision_projector--> <image> slots
    inputs_embeds (batch, seq, hidden) --language_model--> logits, loss

Items are listed row by row, in placeholder order, per kind, so several items per row
(comparison tasks, an ECG with its printout) need nothing special. A model takes the kinds whose
tower is set in its config (`audio_tower`, `ecg_tower`, `vision_tower`); text-only mode (no
tower at all): the collator strips the placeholders, which gives the "same LM and recipe, media
removed" baseline. Configs written before ECG and images existed (audio keys only) load unchanged.

`ClinModel` is a `PreTrainedModel` so that `Trainer.save_model`/checkpoint resume handle it
(tied embeddings inside a plain nn.Module fail to save). LoRA wraps the LM with peft after
`post_init`; the tied-weight map is then re-pointed at the wrapped LM's parameter names.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel

from clinlm.models.audio_tower import build_audio_tower
from clinlm.models.ecg_tower import build_ecg_tower
from clinlm.models.media import MEDIA, MediaKind
from clinlm.models.projector import AudioProjector
from clinlm.models.vision_tower import build_vision_tower

PARTS = ("audio_tower", "multi_modal_projector", "ecg_tower", "ecg_projector", "vision_tower", "vision_projector", "language_model")
BUILDERS = {"audio": build_audio_tower, "ecg": build_ecg_tower, "image": build_vision_tower}


class ClinConfig(PretrainedConfig):
    model_type = "clinlm"

    def __init__(
        self,
        lm_config: dict[str, Any] | None = None,  # the LM's own config.to_dict() (with model_type)
        audio_tower: dict[str, Any] | None = None,  # tower spec (audio_tower.py); None = text-only
        projector: str = "mlp",  # "linear" | "mlp"
        num_audio_tokens: int = 8,  # prefix tokens per recording (time tokens + finding tokens)
        audio_finding_tokens: int = 0,  # of which one per finding of the tower's findings head (projector.py)
        audio_finding_word_ids: list[list[int]] | None = None,  # token ids of each finding's name, added to its token
        audio_finding_bins: int = 0,  # 0: finding statistics along learned directions; B: over B learned levels
        audio_finding_word_presence: bool = False,  # finding names scaled by the finding's peak probability
        audio_time_token_dropout: float = 0.0,  # training only: share of recordings whose time tokens are zeroed
        audio_token_id: int | None = None,
        lora: dict[str, Any] | None = None,  # peft LoraConfig kwargs; None = no LoRA
        ecg_tower: dict[str, Any] | None = None,  # ECG tower spec (ecg_tower.py); None = no ECG input
        num_ecg_tokens: int = 8,  # prefix tokens per ECG
        ecg_token_id: int | None = None,
        vision_tower: dict[str, Any] | None = None,  # vision tower spec (vision_tower.py); None = no images
        num_image_tokens: int = 8,  # prefix tokens per image
        image_token_id: int | None = None,
        **kwargs: Any,
    ):
        self.lm_config = lm_config
        self.audio_tower = audio_tower
        self.projector = projector
        self.num_audio_tokens = num_audio_tokens
        self.audio_finding_tokens = audio_finding_tokens
        self.audio_finding_word_ids = audio_finding_word_ids
        self.audio_finding_bins = audio_finding_bins
        self.audio_time_token_dropout = audio_time_token_dropout
        self.audio_finding_word_presence = audio_finding_word_presence
        self.audio_token_id = audio_token_id
        self.lora = lora
        self.ecg_tower = ecg_tower
        self.num_ecg_tokens = num_ecg_tokens
        self.ecg_token_id = ecg_token_id
        self.vision_tower = vision_tower
        self.num_image_tokens = num_image_tokens
        self.image_token_id = image_token_id
        super().__init__(**kwargs)

    def tower_spec(self, kind: MediaKind) -> dict[str, Any] | None:
        return getattr(self, kind.tower, None)


def lm_from_config(lm_config: dict[str, Any]) -> PreTrainedModel:
    d = dict(lm_config)
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(d.pop("model_type"), **d))


class ClinModel(PreTrainedModel):
    config_class = ClinConfig
    base_model_prefix = "clinlm"
    main_input_name = "input_ids"

    def __init__(
        self,
        config: ClinConfig,
        language_model: PreTrainedModel | None = None,
        audio_tower: nn.Module | None = None,
        towers: dict[str, nn.Module] | None = None,  # {"ecg": ..., "image": ...}: pretrained towers to use
    ):
        super().__init__(config)
        # post_init before the parts are attached: it would otherwise re-run weight initialisation
        # over them, and a pretrained LM or encoder must keep its weights.
        self.post_init()
        lm = language_model if language_model is not None else lm_from_config(config.lm_config)
        given = {**(towers or {}), **({"audio": audio_tower} if audio_tower is not None else {})}
        for kind in MEDIA.values():
            spec = config.tower_spec(kind)
            if spec is None:
                setattr(self, kind.tower, None)
                setattr(self, kind.projector, None)
                continue
            tower = given.get(kind.name)
            if tower is None:
                tower = BUILDERS[kind.name](spec)
            setattr(self, kind.tower, tower)
            findings = int(getattr(config, "audio_finding_tokens", 0) or 0) if kind.name == "audio" else 0
            projector = AudioProjector(tower.hidden_size, lm.config.hidden_size, getattr(config, kind.num_tokens_key) - findings,
                                       config.projector, findings=findings,
                                       finding_bins=int(getattr(config, "audio_finding_bins", 0) or 0) if findings else 0,
                                       time_token_dropout=float(getattr(config, "audio_time_token_dropout", 0.0) or 0.0) if findings else 0.0)
            with torch.no_grad():  # media tokens start at the size of text tokens (per-dimension std)
                projector.norm.weight.fill_(float(lm.get_input_embeddings().weight.std()))
            setattr(self, kind.projector, projector)
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

    def encode_media(self, kind: str, features: torch.Tensor) -> torch.Tensor:
        """(n_items, *feature shape) -> (n_items, num_<kind>_tokens, hidden) through the kind's tower and projector."""
        k = MEDIA[kind]
        tower = getattr(self, k.tower)
        first = next(tower.parameters())
        hidden = tower(features.to(first.device, first.dtype))  # (n_items, frames', d_tower)
        tokens = getattr(self, k.projector)(hidden)  # (n_items, N, hidden)
        words = getattr(self.config, "audio_finding_word_ids", None) if kind == "audio" else None
        if words:
            # Each finding token also carries the embedding of its finding's name (" crackle"): the
            # question's word and the token that answers it then start out alike, which is what
            # lets attention pair them (projector.py).
            emb = self.get_input_embeddings()
            names = torch.stack([emb(torch.tensor(ids, device=tokens.device)).mean(0) for ids in words])  # (K, hidden)
            names = names.to(tokens.dtype).unsqueeze(0)  # (1, K, hidden)
            if getattr(self.config, "audio_finding_word_presence", False):
                # "presence": the name is scaled by the finding's peak probability (the head's channels
                # are the tower output's last K), so a finding that is heard looks like its word and
                # one that is not carries no name: "Any crackles?" then finds " crackles" in the
                # audio tokens only when crackles are there (duplicate-word matching, which small
                # transformers learn readily) instead of having to tell two always-named tokens apart.
                names = names * hidden[..., -len(words):].amax(dim=1).to(tokens.dtype).unsqueeze(-1)  # (n, K, hidden)
            tokens = torch.cat([tokens[:, : -len(words)], tokens[:, -len(words):] + names], dim=1)
        return tokens

    def encode_audio(self, audio_features: torch.Tensor) -> torch.Tensor:
        """(n_audios, *feature shape) -> (n_audios, num_audio_tokens, hidden)."""
        return self.encode_media("audio", audio_features)

    def embed(
        self,
        input_ids: torch.Tensor,
        audio_features: torch.Tensor | None = None,
        ecg_features: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Token embeddings with every run of media tokens replaced by one item's prefix, per kind."""
        embeds = self.get_input_embeddings()(input_ids)  # (batch, seq, hidden)
        given = {"audio": audio_features, "ecg": ecg_features, "image": pixel_values}
        for kind in MEDIA.values():
            features = given[kind.name]
            token_id = getattr(self.config, kind.token_id_key, None)
            slots = input_ids == token_id if token_id is not None else torch.zeros_like(input_ids, dtype=torch.bool)
            n_slots = int(slots.sum())
            n_items = 0 if features is None else int(features.shape[0])
            if getattr(self, kind.tower) is None:
                if n_slots or n_items:
                    takes = ", ".join(k.token for k in MEDIA.values() if getattr(self, k.tower) is not None) or "text only"
                    raise ValueError(
                        f"this model has no {kind.tower}, but the batch has {n_slots} {kind.token} tokens and {n_items} "
                        f"{kind.noun} input(s); it takes: {takes} (a text-only model's collator strips the placeholders)"
                    )
                continue
            n = getattr(self.config, kind.num_tokens_key)
            if n_slots != n_items * n:
                raise ValueError(
                    f"{kind.token} token count does not match the {kind.noun} inputs: {n_slots} tokens in the batch (per row "
                    f"{slots.sum(1).tolist()}) but {n_items} {kind.rows_key} x {n} tokens each; every "
                    f"{kind.token} placeholder must be expanded to {kind.num_tokens_key} tokens and have one input"
                )
            if n_items:
                media = self.encode_media(kind.name, features)  # (n_items, N, hidden)
                # Row-major order of the slots = row by row, placeholder by placeholder = item order.
                embeds = embeds.masked_scatter(slots.unsqueeze(-1), media.to(embeds.dtype).reshape(-1, embeds.shape[-1]))
        return embeds

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        audio_features: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        ecg_features: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        loss_weights: torch.Tensor | None = None,
        **kwargs: Any,
    ):
        """`loss_weights` (batch,): multiplies each row's token losses (train.task_loss_weights)."""
        if position_ids is None and attention_mask is not None:
            # Count positions from the first real token, so left-padded rows (generation) and
            # right-padded rows (training) see the same positions.
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        embeds = self.embed(input_ids, audio_features, ecg_features, pixel_values)
        if labels is not None and (loss_weights is not None or self._lm_keeps_logits()):
            return self._loss_on_labelled_positions(embeds, attention_mask, position_ids, labels, loss_weights, **kwargs)
        return self.language_model(
            inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids, labels=labels, **kwargs
        )

    def _lm_keeps_logits(self) -> bool:
        """Whether the LM's forward takes `logits_to_keep` (transformers' causal LMs do)."""
        if not hasattr(self, "_keeps_logits"):
            base = self.language_model.get_base_model() if self.config.lora else self.language_model
            self._keeps_logits = "logits_to_keep" in inspect.signature(base.forward).parameters
        return self._keeps_logits

    def _loss_on_labelled_positions(self, embeds, attention_mask, position_ids, labels, loss_weights=None, **kwargs):
        """The causal-LM loss with the vocabulary projection only where a next token is scored.

        The loss reads the logits at positions t with labels[t + 1] != IGNORE (the assistant's
        tokens); projecting every prompt position onto the vocabulary as well cost ~10% of an SFT
        step on CPU for nothing. Same value as the LM's own loss (tests/models/test_composite.py),
        including the Trainer's `num_items_in_batch` normalisation under gradient accumulation.
        Returned logits: (n_scored_positions, vocab), the kept positions only.

        `loss_weights` (batch,) multiplies every token loss of its row; the denominator stays the
        number of scored tokens, so a weight of 3 counts a row's tokens as if it appeared 3 times.
        An LM without `logits_to_keep` projects every position and the scored ones are picked after.
        """
        keep = torch.zeros_like(labels, dtype=torch.bool)  # (batch, seq)
        keep[:, :-1] = labels[:, 1:] != -100
        targets = labels[:, 1:][keep[:, :-1]]  # (n_scored,)
        num_items = kwargs.pop("num_items_in_batch", None)
        if self._lm_keeps_logits():
            out = self.language_model(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids,
                                      logits_to_keep=keep, **kwargs)
        else:
            out = self.language_model(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids, **kwargs)
            out.logits = out.logits[keep]  # (n_scored, vocab)
        token_loss = nn.functional.cross_entropy(out.logits.float(), targets, reduction="none")  # (n_scored,)
        if loss_weights is not None:
            row_of_token = torch.arange(labels.shape[0], device=labels.device).unsqueeze(1).expand_as(keep)[keep]
            token_loss = token_loss * loss_weights.to(token_loss.device, token_loss.dtype)[row_of_token]
        total = token_loss.sum()
        denominator = num_items if num_items is not None else targets.numel()
        if torch.is_tensor(denominator):
            denominator = denominator.to(total.device)
        out.loss = total / denominator
        return out

    # --- freezing ---------------------------------------------------------------------------
    def freeze(self, parts: dict[str, bool]) -> None:
        """Freeze parts by name ({"audio_tower": True, "ecg_tower": True, ...}); LoRA keeps its own split of the LM."""
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
