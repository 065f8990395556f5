"""A small GPT and the ladder of sizes the built-in trainer offers.

Pre-norm transformer blocks (LayerNorm -> causal self-attention through
``F.scaled_dot_product_attention`` -> residual; LayerNorm -> GELU MLP (4x) -> residual),
learned absolute positions, no biases, the output head tied to the token embedding.

Model size means **non-embedding parameters** (the blocks and the final norm; not the token
or position embeddings, nor the tied head), the convention of the scaling-law literature and
of the run table's ``model_params``. Per block that is ``12 * width**2 + 2 * width``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

#: Named sizes: name -> (width, layers, heads). CPU rungs up to 10M, GPU rungs above.
LADDER: dict[str, tuple[int, int, int]] = {
    "0.1M": (64, 2, 2),
    "0.3M": (96, 3, 3),
    "0.5M": (128, 3, 4),
    "1M": (128, 5, 4),
    "3M": (256, 4, 4),
    "10M": (384, 6, 6),
    "30M": (512, 10, 8),
    "100M": (768, 14, 12),
    "300M": (1024, 24, 16),
    "1B": (2048, 20, 16),
}
#: The rungs that train at a useful speed on a CPU core (see FACTS.md).
CPU_RUNGS = ("0.1M", "0.3M", "0.5M", "1M", "3M", "10M")


def non_embedding_params(width: int, layers: int) -> int:
    """Parameters of ``layers`` blocks plus the final LayerNorm (no biases)."""
    return layers * (12 * width * width + 2 * width) + width


@dataclass(frozen=True)
class GPTConfig:
    width: int
    layers: int
    heads: int
    vocab_size: int = 256
    context: int = 128
    dropout: float = 0.0
    name: str = ""

    @property
    def non_embedding_params(self) -> int:
        return non_embedding_params(self.width, self.layers)


@dataclass(frozen=True)
class SizeChoice:
    """The ladder rung chosen for a requested ``model_params`` (and how far off it is)."""

    name: str
    width: int
    layers: int
    heads: int
    params: int  # non-embedding parameters of the rung
    requested: int

    @property
    def ratio(self) -> float:
        return self.params / self.requested if self.requested else float("inf")

    def describe(self) -> str:
        return (f"ladder rung {self.name} (width {self.width}, {self.layers} layers, "
                f"{self.heads} heads, {self.params:,} non-embedding params) for requested "
                f"{self.requested:,}")


def ladder_params() -> dict[str, int]:
    return {k: non_embedding_params(w, l) for k, (w, l, _) in LADDER.items()}


def nearest_size(model_params: int | float | str) -> SizeChoice:
    """The ladder rung nearest (in log space) to ``model_params``.

    ``model_params`` may also be a rung name (``"0.5M"``).
    """
    if isinstance(model_params, str) and model_params in LADDER:
        w, l, h = LADDER[model_params]
        p = non_embedding_params(w, l)
        return SizeChoice(model_params, w, l, h, p, p)
    req = int(float(model_params))
    if req <= 0:
        raise ValueError(f"model_params must be positive, got {model_params!r}")
    name = min(LADDER, key=lambda k: abs(math.log(ladder_params()[k] / req)))
    w, l, h = LADDER[name]
    return SizeChoice(name, w, l, h, non_embedding_params(w, l), req)


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        d = cfg.width
        self.heads = cfg.heads
        self.ln1 = nn.LayerNorm(d, bias=False)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.ln2 = nn.LayerNorm(d, bias=False)
        self.fc = nn.Linear(d, 4 * d, bias=False)
        self.fc_out = nn.Linear(4 * d, d, bias=False)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q = q.view(b, t, self.heads, d // self.heads).transpose(1, 2)
        k = k.view(b, t, self.heads, d // self.heads).transpose(1, 2)
        v = v.view(b, t, self.heads, d // self.heads).transpose(1, 2)
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        x = x + self.fc_out(F.gelu(self.fc(self.ln2(x))))
        return x


class GPT(nn.Module):
    """Decoder-only transformer; ``forward(idx, targets=None)`` -> logits or mean loss."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.width)
        self.wpe = nn.Embedding(cfg.context, cfg.width)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.layers)])
        self.ln_f = nn.LayerNorm(cfg.width, bias=False)
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections
            if name.endswith("proj.weight") or name.endswith("fc_out.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.layers))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def non_embedding_params(self) -> int:
        return sum(p.numel() for n, p in self.named_parameters() if not n.startswith(("wte", "wpe")))

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                reduction: str = "mean") -> torch.Tensor:
        t = idx.shape[1]
        pos = torch.arange(t, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.blocks:
            x = block(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)
        if targets is None:
            return logits
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                               targets.reshape(-1), reduction=reduction)


def build_model(size: SizeChoice | str | int, *, vocab_size: int = 256, context: int = 128) -> GPT:
    """A GPT at a ladder rung (a :class:`SizeChoice`, a rung name or a parameter count)."""
    choice = size if isinstance(size, SizeChoice) else nearest_size(size)
    return GPT(GPTConfig(choice.width, choice.layers, choice.heads, vocab_size, context,
                         name=choice.name))
