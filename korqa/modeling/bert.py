"""The BERT network in HF's names: embeddings → encoder → pooler, plus the QA and MLM+NSP heads."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Self

import torch
import torch.nn.functional as F
from torch import nn

from korqa.modeling.config import ACTIVATIONS, BertConfig  # noqa: F401 (BertConfig re-exported)

if TYPE_CHECKING:
    from korqa.modeling.checkpoint import LoadReport



class BertEmbeddings(nn.Module):
    """Word + token-type + absolute position embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size,
                                            padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        length = input_ids.size(1)
        if length > self.position_embeddings.num_embeddings:
            raise ValueError(f"sequence length {length} exceeds max_position_embeddings "
                             f"({self.position_embeddings.num_embeddings})")
        positions = torch.arange(length, device=input_ids.device)  # [L], broadcast over B
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings(positions)  # [B, L, H]
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    """Multi-head scaled dot-product attention over the whole sequence, with an additive mask."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_size = config.hidden_size // config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_prob = config.attention_probs_dropout_prob

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, self.head_size).transpose(1, 2)  # [B, h, L, d]

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        q = self.split_heads(self.query(hidden))
        k = self.split_heads(self.key(hidden))
        v = self.split_heads(self.value(hidden))
        dropout = self.dropout_prob if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        return y.transpose(1, 2).flatten(2)  # [B, L, H]


class BertSelfOutput(nn.Module):
    """Projects the heads back to the hidden size; residual + LayerNorm (post-norm, as in BERT)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden)) + residual)


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.output(self.self(hidden, mask), hidden)


class BertIntermediate(nn.Module):
    """The feed-forward expansion: Linear to intermediate_size, then GELU."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.approximate = ACTIVATIONS[config.hidden_act]

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(hidden), approximate=self.approximate)  # [B, L, I]


class BertOutput(nn.Module):
    """The feed-forward contraction back to hidden_size; residual + LayerNorm."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden)) + residual)  # [B, L, H]


class BertLayer(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        attended = self.attention(hidden, mask)
        return self.output(self.intermediate(attended), attended)


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None,
                output_all_encoded_layers: bool = True) -> list[torch.Tensor]:
        outputs = []
        for layer in self.layer:
            hidden = layer(hidden, mask)
            if output_all_encoded_layers:
                outputs.append(hidden)
        return outputs if output_all_encoded_layers else [hidden]


class BertPooler(nn.Module):
    """tanh(Linear) of the first ([CLS]) token: the sentence vector NSP is trained on."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))  # [B, H]


class BertPreTrainedModel(nn.Module):
    """What all BERT models share: the config, BERT's weight init, HF-format load and save."""

    # Parameters that share storage with another one; checkpoints may omit them.
    tied_keys: tuple[str, ...] = ()

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config

    def init_weights(self, module: nn.Module) -> None:
        # BERT's truncated-normal init is approximated by a plain normal, as HF does.
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    @classmethod
    def from_pretrained(cls, name_or_dir: str | Path, output_loading_info: bool = False,
                        ) -> Self | tuple[Self, LoadReport]:
        """Load `config.json` + weights from a directory or a hub name; returns the model in eval
        mode, or `(model, LoadReport)` with the missing/unexpected keys if `output_loading_info`."""
        from korqa.modeling.checkpoint import load_pretrained  # it imports this module

        model, report = load_pretrained(cls, name_or_dir)
        return (model, report) if output_loading_info else model

    def save_pretrained(self, directory: str | Path, dtype: str = "fp32") -> None:
        """Write `config.json` + `model.safetensors` (fp32, fp16 or int8) with HF key names."""
        from korqa.modeling.checkpoint import save_pretrained

        save_pretrained(self, directory, dtype)


class BertModel(BertPreTrainedModel):
    """The BERT encoder: returns every layer's hidden states and the pooled [CLS] vector."""

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.apply(self.init_weights)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                output_all_encoded_layers: bool = True,
                ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """input_ids, token_type_ids, attention_mask: [B, L] (mask 1 = attend, 0 = padding).

        Returns (all_encoder_layers, pooled_output): a list of each layer's [B, L, H] output (only
        the last one if `output_all_encoded_layers` is False) and the [B, H] pooled [CLS], or None
        for a model built without pooler.
        """
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        hidden = self.embeddings(input_ids, token_type_ids)  # [B, L, H]
        mask = self.extended_attention_mask(attention_mask, hidden.dtype)
        layers = self.encoder(hidden, mask, output_all_encoded_layers)
        pooled = self.pooler(layers[-1]) if self.pooler is not None else None
        return layers, pooled

    @staticmethod
    def extended_attention_mask(attention_mask: torch.Tensor | None,
                                dtype: torch.dtype) -> torch.Tensor | None:
        """[B, L] 1/0 mask → additive [B, 1, 1, L]: 0 where attended, the dtype's most negative
        number where padded. None when nothing is padded, which lets SDPA use its fastest kernel."""
        if attention_mask is None or bool(attention_mask.all()):
            return None
        keep = attention_mask[:, None, None, :].to(dtype)  # [B, 1, 1, L]
        return (1.0 - keep) * torch.finfo(dtype).min


class BertForQuestionAnswering(BertPreTrainedModel):
    """BERT + a Linear(hidden, 2) giving each token a start and an end logit (SQuAD/KorQuAD)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        # No pooler, as in HF, so that checkpoint keys match HF's one-to-one in both directions.
        self.bert = BertModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.init_weights(self.qa_outputs)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                start_positions: torch.Tensor | None = None,
                end_positions: torch.Tensor | None = None,
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Without positions: (start_logits, end_logits), each [B, L] (padding not masked out).
        With start_positions and end_positions ([B] token indices): the scalar loss only,
        (CE(start) + CE(end)) / 2; positions outside [0, L) are clamped to L and ignored."""
        layers, _ = self.bert(input_ids, token_type_ids, attention_mask,
                              output_all_encoded_layers=False)
        logits = self.qa_outputs(layers[-1])  # [B, L, 2]
        start_logits, end_logits = logits.unbind(-1)  # [B, L] each
        if start_positions is None or end_positions is None:
            return start_logits.contiguous(), end_logits.contiguous()
        # Answers truncated out of this window point at L: a class no logit has, so ignored.
        ignored = start_logits.size(1)
        start_positions = start_positions.view(-1).clamp(0, ignored)
        end_positions = end_positions.view(-1).clamp(0, ignored)
        start_loss = F.cross_entropy(start_logits, start_positions, ignore_index=ignored)
        end_loss = F.cross_entropy(end_logits, end_positions, ignore_index=ignored)
        return (start_loss + end_loss) / 2


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.approximate = ACTIVATIONS[config.hidden_act]
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(F.gelu(self.dense(hidden), approximate=self.approximate))


class BertLMPredictionHead(nn.Module):
    """Masked-LM scores: transform, then the word embeddings (tied) as output matrix, plus bias."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(hidden)) + self.bias  # [B, L, V]


class BertPreTrainingHeads(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.predictions = BertLMPredictionHead(config)
        self.seq_relationship = nn.Linear(config.hidden_size, 2)

    def forward(self, sequence: torch.Tensor, pooled: torch.Tensor,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.predictions(sequence), self.seq_relationship(pooled)


class BertForPreTraining(BertPreTrainedModel):
    """BERT + masked-LM and next-sentence-prediction heads."""

    tied_keys = ("cls.predictions.decoder.weight",)

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.bert = BertModel(config)
        self.cls = BertPreTrainingHeads(config)
        self.cls.apply(self.init_weights)
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                masked_lm_labels: torch.Tensor | None = None,
                next_sentence_label: torch.Tensor | None = None,
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Without labels: (prediction_scores [B, L, V], seq_relationship_score [B, 2]).
        With labels: the scalar loss only, the sum of the terms whose labels are given:
        MLM cross-entropy over masked_lm_labels [B, L] (-100 = not predicted) and NSP
        cross-entropy over next_sentence_label [B] (0 = B follows A, 1 = random B)."""
        layers, pooled = self.bert(input_ids, token_type_ids, attention_mask,
                                   output_all_encoded_layers=False)
        scores, nsp_scores = self.cls(layers[-1], pooled)
        if masked_lm_labels is None and next_sentence_label is None:
            return scores, nsp_scores
        loss = scores.new_zeros(())
        if masked_lm_labels is not None:
            loss = loss + F.cross_entropy(scores.flatten(0, 1), masked_lm_labels.view(-1),
                                          ignore_index=-100)
        if next_sentence_label is not None:
            loss = loss + F.cross_entropy(nsp_scores, next_sentence_label.view(-1))
        return loss

