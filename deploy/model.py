"""A compact Llama-family decoder for inference, with a static KV cache that each row fills at its own pace.

Why our own forward rather than transformers' modules: speculative decoding with batch > 1 needs every row of a
batch to keep, and roll back, its own number of cached tokens (rows accept different numbers of draft tokens).
Here a row's length is just an integer: tokens are written at explicit per-row positions, attention masks every
key past the query's position, and rolling back is lowering that integer (stale entries are masked, then
overwritten). It also keeps Python overhead per forward low on CPU (fused q/k/v and gate/up projections, one mask
for all layers) and makes a verification of several tokens compute bit for bit what one-token decodes compute
(``attend_rowwise``, ``PackedLinear``), which exact greedy speculative decoding needs in bfloat16. The weights are a transformers checkpoint's (Llama, Mistral
without sliding window, Qwen2), loaded by name, so the same folder serves both; ``tests/test_speculative.py``
checks the logits against transformers' own forward.

Shapes: ``B`` batch rows, ``T`` new tokens per row, ``S`` cache capacity, ``H``/``Hkv`` query/key-value heads,
``D`` head dim. Positions are absolute per row: a row's prompt sits at positions ``0..len-1`` whatever the other
rows' lengths (prompts are right-padded; the padding is written past the row's length and overwritten later).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")
KV_CACHE_DTYPES = ("auto", "float32", "bfloat16", "float16", "fp8", "fp8_e4m3")
_STATIC_ROPE_TYPES = ("default", "linear", "llama3", "yarn")
FP8_MAX = 448.0  # largest finite float8_e4m3fn
KV_BLOCK = 64
ROWWISE_MAX_T = 64  # calls up to this many new tokens per row (decode, verify) use ``attend_rowwise``


@dataclass(frozen=True)
class ModelArgs:
    """The architecture numbers our forward needs, read from a transformers config."""

    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    intermediate_size: int
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_position: int = 2048
    tie_embeddings: bool = True
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    model_type: str = "llama"

    @classmethod
    def from_hf_config(cls, config: Any) -> ModelArgs:
        """Read a transformers ``PretrainedConfig``; raise a clear error for what this forward cannot run."""
        mt = getattr(config, "model_type", None)
        if mt not in SUPPORTED_MODEL_TYPES:
            raise ValueError(
                f"model_type {mt!r} is not supported by deploy.model (supported: {', '.join(SUPPORTED_MODEL_TYPES)}); "
                "serve it with the hf: client (clinic_env.llm.TransformersChatModel) or vLLM instead"
            )
        act = getattr(config, "hidden_act", "silu")
        if act != "silu":
            raise ValueError(f"hidden_act {act!r} is not supported (only 'silu', as in Llama)")
        windowed = getattr(config, "sliding_window", None) and getattr(
            config, "use_sliding_window", mt == "mistral"
        )
        if mt in ("mistral", "qwen2") and windowed:
            raise ValueError(
                f"{mt} with sliding_window={config.sliding_window} is not supported: deploy.model has full "
                "attention only; set sliding_window=None in config.json if your contexts are shorter"
            )
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        rope = _rope_parameters(config)
        return cls(
            vocab_size=config.vocab_size,
            dim=config.hidden_size,
            n_layers=config.num_hidden_layers,
            n_heads=heads,
            n_kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=head_dim,
            intermediate_size=config.intermediate_size,
            norm_eps=getattr(config, "rms_norm_eps", 1e-6),
            rope_theta=float(rope.get("rope_theta", 10000.0)),
            max_position=getattr(config, "max_position_embeddings", 2048),
            tie_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
            # Qwen2 always has q/k/v biases and none on o_proj; Llama's attention_bias covers all four
            qkv_bias=mt == "qwen2" or bool(getattr(config, "attention_bias", False)),
            o_bias=mt != "qwen2" and bool(getattr(config, "attention_bias", False)),
            mlp_bias=mt != "qwen2" and bool(getattr(config, "mlp_bias", False)),
            model_type=mt,
        )


def _rope_parameters(config: Any) -> dict[str, Any]:
    params = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    params = dict(params)
    params.setdefault("rope_theta", getattr(config, "rope_theta", 10000.0))
    params.setdefault("rope_type", params.get("type", "default"))
    return params


def rope_frequencies(config: Any, args: ModelArgs) -> tuple[Tensor, float]:
    """Inverse frequencies and the cos/sin scaling, computed as transformers computes them for this config."""
    rope = _rope_parameters(config) if config is not None else {"rope_type": "default"}
    kind = rope.get("rope_type", "default")
    if kind not in _STATIC_ROPE_TYPES:
        raise ValueError(
            f"rope_type {kind!r} is not supported (position-dependent scaling); supported: {_STATIC_ROPE_TYPES}"
        )
    if kind == "default" or config is None:
        inv = 1.0 / (
            args.rope_theta ** (torch.arange(0, args.head_dim, 2, dtype=torch.float) / args.head_dim)
        )
        return inv, 1.0
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    inv, scale = ROPE_INIT_FUNCTIONS[kind](config, torch.device("cpu"))
    return inv.float(), float(scale)


def attention_length(max_position: int, capacity: int) -> int:
    """Keys a call whose largest position is ``max_position`` attends over: past it, rounded up to ``KV_BLOCK``.

    Rounded to a block so that attention sees the same key layout whether a position is decoded alone or verified
    among draft tokens, which keeps low-precision (bfloat16) numerics consistent between the two.
    """
    return min(capacity, -(-(max_position + 1) // KV_BLOCK) * KV_BLOCK)


class KVCache:
    """Keys and values of every layer, ``[layers, B, Hkv, S, D]``, written at per-row positions.

    ``storage`` may be narrower than the compute dtype (bfloat16, float16, or fp8 e4m3 with a unit scale, as
    vLLM's ``--kv-cache-dtype fp8`` does without calibration): values are rounded on write and widened on read.
    """

    def __init__(
        self,
        n_layers: int,
        batch: int,
        n_kv_heads: int,
        head_dim: int,
        capacity: int,
        *,
        dtype: torch.dtype,
        device: str | torch.device = "cpu",
        storage: str = "auto",
    ):
        if storage not in KV_CACHE_DTYPES:
            raise ValueError(f"kv_cache_dtype must be one of {KV_CACHE_DTYPES}, got {storage!r}")
        sdt = {
            "auto": dtype,
            "float32": torch.float32,
            "bfloat16": torch.bfloat16,
            "float16": torch.float16,
            "fp8": torch.float8_e4m3fn,
            "fp8_e4m3": torch.float8_e4m3fn,
        }[storage]
        self.dtype, self.storage_dtype, self.capacity = dtype, sdt, capacity
        self._fp8 = sdt == torch.float8_e4m3fn
        shape = (n_layers, batch, n_kv_heads, capacity, head_dim)
        # zeros, not empty: a masked key still enters attention's matmul, and a NaN bit pattern would poison it
        self.k = torch.zeros(shape, dtype=sdt, device=device)
        self.v = torch.zeros(shape, dtype=sdt, device=device)

    @property
    def batch(self) -> int:
        return self.k.shape[1]

    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() * 2

    def _store(self, x: Tensor) -> Tensor:
        if self._fp8:
            x = x.clamp(-FP8_MAX, FP8_MAX)  # e4m3fn has no inf: out-of-range casts would become NaN
        return x.to(self.storage_dtype)

    def update(
        self, layer: int, k: Tensor, v: Tensor, rows: Tensor, pos: Tensor, kv_len: int
    ) -> tuple[Tensor, Tensor]:
        """Write ``k``/``v`` (``[B, T, Hkv, D]``) at ``(rows, pos)`` (``[B, T]``); return keys/values ``[:kv_len]``."""
        kc, vc = self.k[layer], self.v[layer]
        # advanced indices split by a slice put their broadcast dims first: kc[rows, :, pos] is [B, T, Hkv, D]
        kc[rows, :, pos] = self._store(k)
        vc[rows, :, pos] = self._store(v)
        ks, vs = kc[:, :, :kv_len], vc[:, :, :kv_len]
        if self.storage_dtype != self.dtype:
            ks, vs = ks.to(self.dtype), vs.to(self.dtype)
        return ks, vs

    def select_rows(self, keep: Tensor) -> None:
        """Keep only these batch rows (compaction once rows have finished)."""
        self.k = self.k.index_select(1, keep)
        self.v = self.v.index_select(1, keep)

    def copy_layers_from(self, other: KVCache, n_layers: int, upto: int) -> None:
        """Copy the first ``n_layers`` layers' first ``upto`` positions (a self-draft reuses the target's prefill)."""
        self.k[:n_layers, :, :, :upto] = other.k[:n_layers, :, :, :upto].to(self.storage_dtype)
        self.v[:n_layers, :, :, :upto] = other.v[:n_layers, :, :, :upto].to(self.storage_dtype)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        # transformers' arithmetic (float32 statistics), in five ops: F.rms_norm takes ~3x longer on CPU here
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class PackedLinear(nn.Module):
    """A float linear with its weight pre-packed for oneDNN (PyTorch's CPU GEMM library), used for bfloat16 on CPU.

    Measured on this project's CPU target: about 15% faster than ``F.linear`` for one row and 30-40% for the 5-10
    rows of a speculative verification (bf16), and each row's result does not depend on how many rows are in the
    call, which greedy exactness needs. ``pack_linears`` swaps them in after any quantization. Uses the packing ops
    PyTorch's own compiler uses for frozen CPU graphs; ``pack_linears`` leaves the model as is if they fail.
    """

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        w = linear.weight.detach()
        self.packed = torch.ops.mkldnn._reorder_linear_weight(w)
        self.nbytes = w.numel() * w.element_size()
        self.bias = linear.bias

    def forward(self, x: Tensor) -> Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")


def pack_linears(model: nn.Module) -> int:
    """Replace every plain bfloat16 ``nn.Linear`` on CPU by a ``PackedLinear``; returns how many were packed."""
    if not torch.backends.mkldnn.is_available():
        return 0
    todo = [
        (name, mod)
        for name, mod in model.named_modules()
        if type(mod) is nn.Linear
        and type(mod.weight.data) is torch.Tensor
        and mod.weight.dtype == torch.bfloat16
        and mod.weight.device.type == "cpu"
    ]
    try:
        packed = [(name, PackedLinear(mod)) for name, mod in todo]
        x = torch.zeros(1, packed[0][1].in_features, dtype=torch.bfloat16) if packed else None
        if x is not None:
            packed[0][1](x)  # the ops exist and run here
    except (RuntimeError, AttributeError):
        return 0
    for name, new in packed:
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, new)
    return len(packed)


def attend_rowwise(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, scale: float) -> Tensor:
    """Attention whose result for a query does not depend on the other queries of the call.

    ``q`` ``[B, H, T, D]``, ``k``/``v`` ``[B, Hkv, S, D]``, ``bias`` ``[B, 1, 1, T, S]`` (0 or -inf). Greedy
    speculative decoding is exact only if verifying ``gamma + 1`` tokens in one call computes what ``gamma + 1``
    one-token calls compute; in bfloat16 a one-ulp difference turns logit ties (common at that precision) the other
    way. The fused CPU attention kernel blocks its work by query count and key length, so its results drift by
    an ulp between the two; two plain matmuls (grouped-query heads folded into rows, no copies) and a float32
    softmax do not, at about 50 us more per layer. Used for the small-T calls (decode, verify); prefill keeps
    the fused kernel.
    """
    B, H, T, D = q.shape
    Hkv = k.shape[1]
    G = H // Hkv
    s = torch.matmul(q.reshape(B, Hkv, G * T, D), k.transpose(-1, -2))
    s = s.view(B, Hkv, G, T, -1).float().mul_(scale).add_(bias)
    p = torch.softmax(s, dim=-1).to(v.dtype).view(B, Hkv, G * T, -1)
    return torch.matmul(p, v).view(B, H, T, D)


def apply_rope(x: Tensor, cos: Tensor, sin_signed: Tensor) -> Tensor:
    """Rotary embedding in transformers' "rotate half" convention (the checkpoints' q/k weights assume it).

    ``rotate_half(x) * sin == roll(x, D/2) * [-sin, sin]`` (halves): one roll instead of two slices, a negation
    and a concatenation, with bit-identical results; ``sin_signed`` is that signed table.
    """
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * sin_signed


class Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = args.n_heads, args.n_kv_heads, args.head_dim
        total = (args.n_heads + 2 * args.n_kv_heads) * args.head_dim
        self.wqkv = nn.Linear(args.dim, total, bias=args.qkv_bias)
        self.wo = nn.Linear(args.n_heads * args.head_dim, args.dim, bias=args.o_bias)
        self.scale = args.head_dim**-0.5

    def forward(self, x: Tensor, ctx: _StepContext, layer: int) -> Tensor:
        B, T, _ = x.shape
        H, Hkv, D = self.n_heads, self.n_kv_heads, self.head_dim
        qkv = self.wqkv(x).view(B, T, H + 2 * Hkv, D)
        qk = apply_rope(qkv[:, :, : H + Hkv], ctx.cos, ctx.sin)  # rotate q and k in one go
        q, k, v = qk[:, :, :H], qk[:, :, H:], qkv[:, :, H + Hkv :]
        ks, vs = ctx.cache.update(layer, k, v, ctx.rows, ctx.positions, ctx.kv_len)
        if ctx.bias is not None:
            y = attend_rowwise(q.transpose(1, 2), ks, vs, ctx.bias, self.scale)
        else:
            y = F.scaled_dot_product_attention(
                q.transpose(1, 2), ks, vs, attn_mask=ctx.mask, scale=self.scale, enable_gqa=Hkv != H
            )
        return self.wo(y.transpose(1, 2).reshape(B, T, H * D))


class FeedForward(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.w13 = nn.Linear(args.dim, 2 * args.intermediate_size, bias=args.mlp_bias)  # [gate; up]
        self.w2 = nn.Linear(args.intermediate_size, args.dim, bias=args.mlp_bias)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.w13(x).chunk(2, dim=-1)
        return self.w2(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.attention = Attention(args)
        self.feed_forward = FeedForward(args)
        self.attention_norm = RMSNorm(args.dim, args.norm_eps)
        self.ffn_norm = RMSNorm(args.dim, args.norm_eps)

    def forward(self, x: Tensor, ctx: _StepContext, layer: int) -> Tensor:
        h = x + self.attention(self.attention_norm(x), ctx, layer)
        return h + self.feed_forward(self.ffn_norm(h))


@dataclass
class _StepContext:
    """What every layer of one forward shares: rotary tables, mask, cache and write positions."""

    cos: Tensor
    sin: Tensor
    mask: Tensor | None  # boolean mask for the fused kernel; None when ``bias`` is used
    cache: KVCache
    rows: Tensor
    positions: Tensor
    kv_len: int
    bias: Tensor | None = None  # additive mask for ``attend_rowwise``; None: the fused kernel


class Transformer(nn.Module):
    """Decoder-only Llama-family model. ``forward(tokens, positions, cache)`` writes the cache and returns logits."""

    def __init__(self, args: ModelArgs, rope: tuple[Tensor, float] | None = None):
        super().__init__()
        self.args = args
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim)
        self.layers = nn.ModuleList(Block(args) for _ in range(args.n_layers))
        self.norm = RMSNorm(args.dim, args.norm_eps)
        self.output = nn.Linear(args.dim, args.vocab_size, bias=False)
        if args.tie_embeddings:
            self.output.weight = self.tok_embeddings.weight
        inv_freq, self.rope_scale = rope if rope is not None else rope_frequencies(None, args)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._rope_len = 0
        self._cos = self._sin = torch.empty(0)
        self._rows: dict[tuple[int, int, torch.device], Tensor] = {}
        self.hf_config: Any = (
            None  # set by from_pretrained; kept for saving and for draft compatibility checks
        )

    # ----------------------------------------------------------------------------------------------- helpers
    @property
    def dtype(self) -> torch.dtype:
        return self.norm.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.norm.weight.device

    def _rope_tables(self, n: int) -> tuple[Tensor, Tensor]:
        if n > self._rope_len or self._cos.dtype != self.dtype or self._cos.device != self.inv_freq.device:
            size = max(n, self.args.max_position, 2 * self._rope_len)
            pos = torch.arange(size, device=self.inv_freq.device, dtype=torch.float)
            freqs = pos[:, None] * self.inv_freq[None, :]  # same float ops as transformers' rotary embedding
            emb = torch.cat((freqs, freqs), dim=-1)
            half = emb.shape[-1] // 2
            sin = emb.sin() * self.rope_scale
            self._cos = (emb.cos() * self.rope_scale).to(self.dtype)
            self._sin = torch.cat((-sin[:, :half], sin[:, half:]), dim=-1).to(self.dtype)  # see apply_rope
            self._arange = torch.arange(size, device=self.inv_freq.device)
            self._rope_len = size
        return self._cos, self._sin

    def _row_index(self, B: int, T: int, device: torch.device) -> Tensor:
        """``[B, T]`` row numbers for the cache writes; built once per shape (a decode loop reuses a few)."""
        key = (B, T, device)
        rows = self._rows.get(key)
        if rows is None:
            rows = self._rows[key] = torch.arange(B, device=device)[:, None].expand(B, T)
        return rows

    def new_cache(
        self, batch: int, capacity: int, *, kv_cache_dtype: str = "auto", n_layers: int | None = None
    ) -> KVCache:
        a = self.args
        return KVCache(
            n_layers or a.n_layers,
            batch,
            a.n_kv_heads,
            a.head_dim,
            capacity,
            dtype=self.dtype,
            device=self.device,
            storage=kv_cache_dtype,
        )

    # ----------------------------------------------------------------------------------------------- forward
    def forward(
        self,
        tokens: Tensor,
        positions: Tensor,
        cache: KVCache,
        *,
        logits_index: Tensor | None = None,
        n_layers: int | None = None,
        kv_len: int | None = None,
        fast_attention: bool = False,
    ) -> Tensor:
        """Logits ``[B, T, V]`` for ``tokens`` (``[B, T]``) at ``positions`` (``[B, T]``), written into ``cache``.

        ``logits_index`` (``[B]``): return only that position's logits per row (``[B, 1, V]``), e.g. the last real
        prompt token after a right-padded prefill. ``n_layers``: run only the first layers, then the final norm and
        head (the self-draft). ``kv_len``: keys to attend over (default: ``attention_length`` of the largest
        position, which costs reading ``positions`` back; a decode loop that knows its lengths passes it and must
        pass that same value, or bfloat16 results may differ by an ulp). Calls of up to ``ROWWISE_MAX_T`` tokens use ``attend_rowwise`` unless ``fast_attention`` (drafts:
        their numerics do not affect the output).
        """
        B, T = tokens.shape
        if kv_len is None:
            pmax = int(positions.max())
            if pmax >= cache.capacity:
                raise ValueError(f"position {pmax} is past the KV cache capacity {cache.capacity}")
            kv_len = attention_length(pmax, cache.capacity)
        elif kv_len > cache.capacity:
            raise ValueError(f"kv_len {kv_len} is past the KV cache capacity {cache.capacity}")
        cos, sin = self._rope_tables(kv_len)
        # key j is visible to a query at position p iff j <= p: causal within the row, and everything past the
        # row's own length (stale or padding entries) is hidden. One mask (or additive bias) for all layers.
        visible = self._arange[:kv_len] <= positions[..., None]  # [B, T, kv_len]
        mask = bias = None
        if T <= ROWWISE_MAX_T and not fast_attention:
            bias = torch.where(visible, 0.0, float("-inf"))[:, None, None]  # [B, 1, 1, T, kv_len], float32
        else:
            mask = visible.unsqueeze(1)
        ctx = _StepContext(
            cos[positions].unsqueeze(2),
            sin[positions].unsqueeze(2),
            mask,
            cache,
            self._row_index(B, T, tokens.device),
            positions,
            kv_len,
            bias,
        )
        x = self.tok_embeddings(tokens)
        n = self.args.n_layers if n_layers is None else n_layers
        for i in range(n):
            x = self.layers[i](x, ctx, i)
        if logits_index is not None:
            x = x[torch.arange(B, device=x.device), logits_index].unsqueeze(1)
        return self.output(self.norm(x))

    # ----------------------------------------------------------------------------------------------- loading
    @classmethod
    def from_hf_state_dict(
        cls, config: Any, state: dict[str, Tensor], *, dtype: torch.dtype | None = None
    ) -> Transformer:
        """Build from a transformers config and a (float) transformers state dict."""
        args = ModelArgs.from_hf_config(config)
        model = cls(args, rope_frequencies(config, args))
        ours = convert_hf_state_dict(state, args)
        missing, unexpected = model.load_state_dict(ours, strict=False)
        missing = [m for m in missing if not (args.tie_embeddings and m == "output.weight")]
        if missing or unexpected:
            raise ValueError(
                f"checkpoint does not match the architecture: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        if args.tie_embeddings:
            model.output.weight = model.tok_embeddings.weight
        model.hf_config = config
        if dtype is not None:
            model.to(dtype)
        return model.eval()


def convert_hf_state_dict(state: dict[str, Tensor], args: ModelArgs) -> dict[str, Tensor]:
    """transformers names -> ours, concatenating q/k/v and gate/up rows.

    Works for float tensors and for our quantized tensors alike (``weight``, ``scales``, ``zeros``, ``bias``):
    every one of them is laid out one row per output feature, so fused rows are exactly the separate modules'.
    """
    out: dict[str, Tensor] = {}
    fused: dict[str, dict[str, dict[str, Tensor]]] = {}
    for name, t in state.items():
        if name.endswith("rotary_emb.inv_freq"):
            continue
        key = name[len("model.") :] if name.startswith("model.") else name
        if key.startswith("embed_tokens."):
            out["tok_embeddings." + key.split(".", 1)[1]] = t
        elif key.startswith("norm."):
            out[key] = t
        elif key.startswith("lm_head."):
            out["output." + key.split(".", 1)[1]] = t
        elif key.startswith("layers."):
            parts = key.split(".")
            p, sub, mod, leaf = f"layers.{parts[1]}", parts[2], parts[3], ".".join(parts[4:])
            if sub == "self_attn" and mod in ("q_proj", "k_proj", "v_proj"):
                fused.setdefault(f"{p}.attention.wqkv.{leaf}", {})[mod] = t
            elif sub == "self_attn" and mod == "o_proj":
                out[f"{p}.attention.wo.{leaf}"] = t
            elif sub == "mlp" and mod in ("gate_proj", "up_proj"):
                fused.setdefault(f"{p}.feed_forward.w13.{leaf}", {})[mod] = t
            elif sub == "mlp" and mod == "down_proj":
                out[f"{p}.feed_forward.w2.{leaf}"] = t
            elif sub == "input_layernorm":
                out[f"{p}.attention_norm.{mod}"] = t
            elif sub == "post_attention_layernorm":
                out[f"{p}.ffn_norm.{mod}"] = t
            else:
                raise ValueError(f"unexpected tensor {name!r} in a {args.model_type} checkpoint")
        else:
            raise ValueError(f"unexpected tensor {name!r} in a {args.model_type} checkpoint")
    order = {"wqkv": ("q_proj", "k_proj", "v_proj"), "w13": ("gate_proj", "up_proj")}
    for name, parts in fused.items():
        want = order[name.split(".")[-2]]
        if set(parts) != set(want):
            raise ValueError(f"{name}: expected tensors from {want}, found {sorted(parts)}")
        out[name] = torch.cat([parts[m] for m in want], dim=0)
    return out


def load_hf_config(path: str | Path) -> Any:
    """The transformers config of a local model folder, with clear errors for a wrong path."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"model path {str(p)!r} does not exist (models load from local folders only)")
    if not (p / "config.json").exists():
        raise FileNotFoundError(
            f"{str(p)!r} has no config.json: not a transformers model folder (save_pretrained)"
        )
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(p, local_files_only=True)


def load_transformer(path: str | Path, *, dtype: str = "float32", device: str = "cpu") -> Transformer:
    """Load a local transformers checkpoint (float, or quantized by ``deploy.quantize``) into ``Transformer``."""
    p = Path(path)
    config = load_hf_config(p)
    torch_dtype = _torch_dtype(dtype)
    if (p / "quantization.json").exists():
        from .quantize import load_quantized_transformer

        return load_quantized_transformer(p, config, dtype=torch_dtype, device=device)
    ModelArgs.from_hf_config(config)  # unsupported architectures fail before any weight is read
    model = Transformer.from_hf_state_dict(config, read_hf_weights(p), dtype=torch_dtype)
    return model.to(device)


def read_hf_weights(path: Path) -> dict[str, Tensor]:
    """The float tensors of a transformers folder: ``model.safetensors``, sharded safetensors, or a ``.bin``.

    Read directly rather than through ``from_pretrained``: no second model in memory and no progress bars.
    """
    single, index, binary = (
        path / "model.safetensors",
        path / "model.safetensors.index.json",
        path / "pytorch_model.bin",
    )
    if single.exists() or index.exists():
        from safetensors.torch import load_file

        files = (
            [single]
            if single.exists()
            else sorted({path / f for f in json.loads(index.read_text())["weight_map"].values()})
        )
        state: dict[str, Tensor] = {}
        for f in files:
            state.update(load_file(str(f)))
    elif binary.exists():
        state = torch.load(binary, map_location="cpu", weights_only=True)
    else:
        raise FileNotFoundError(f"{str(path)!r} has no model.safetensors, sharded index or pytorch_model.bin")
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def _torch_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    allowed = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in allowed:
        raise ValueError(f"dtype must be one of {sorted(allowed)}, got {dtype!r}")
    return allowed[dtype]
