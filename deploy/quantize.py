"""Weight-only quantization behind a scheme registry: W8A16 per channel and W4A16 group-wise, saved and loaded.

Each scheme has the two methods of gpt-fast's handlers: ``create_quantized_state_dict(model)`` (float model ->
portable quantized tensors) and ``convert_for_runtime(model)`` (swap float modules for quantized ones that
``load_state_dict`` then fills). A checkpoint names its scheme in ``quantization.json``; nothing is read from
file names.

| scheme | weights | CPU matmul | notes |
|---|---|---|---|
| ``int8`` | int8, one scale per output channel | ATen ``_weight_int8pack_mm`` | qparams from torchao |
| ``int4-g32``/``-g64``/``-g128`` (``int4`` = ``int4-g128``) | 4 bit, asymmetric groups along K | ATen ``_weight_int4pack_mm_for_cpu`` | own packing |
| ``int8-torchao`` | torchao ``Int8WeightOnlyConfig`` tensors | torchao | reference, in memory only |
| ``int4-torchao`` | torchao ``IntxWeightOnlyConfig(int4, PerGroup(32))`` | torchao | reference, in memory only |

Why not torchao end to end (measured in ``benchmarks/results/quantization.json``): torchao 0.18's int8 weight-only
linear runs on CPU but casts the whole int8 weight to the activation dtype on every call, about 2.5x slower than
the float matmul at batch 1; and it has no packed int4 CPU kernel on x86 (``Int4WeightOnlyConfig``'s packings are
for CUDA/XPU/NPU, ``IntxWeightOnlyConfig`` keeps int4 values one per byte and dequantizes per call). So ``int8``
takes its weights and scales from torchao and multiplies with PyTorch's own CPU kernel, and ``int4`` packs nibbles
itself for PyTorch's CPU int4 kernel. Both kernels are fast with bfloat16 activations only (their float32 paths
are reference loops), so the matmul input is rounded to bfloat16 and the output widened back: W8A16 / W4A16, the
precision Baichuan-M2 deploys with. Token embeddings are quantized the same way (a row gather, then dequantize),
since at small scale they are a large share of the bytes.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FORMAT_VERSION = 1
QUANT_FILE = "quantization.json"
WEIGHTS_FILE = "model.safetensors"
SMALL_M = (
    16  # rows up to which the ATen int8 kernel beats converting the weight to bf16 for one GEMM (measured)
)
ACT_DTYPE = torch.bfloat16


# ---------------------------------------------------------------------------------------------- quant maths
def quantize_int4_groups(w: Tensor, group_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Asymmetric 4-bit groups along K in the tinygemm convention: ``w ~= (q - 8) * scale + zero``.

    Returns ``q`` (int32 ``[N, K]`` in 0..15), ``scales`` and ``zeros`` (float32 ``[N, K/group]``). Each group's
    min maps to q=0 and its max to q=15, so ``zero = min + 8 * scale`` (the value of q = 8).
    """
    N, K = w.shape
    g = w.float().reshape(N, K // group_size, group_size)
    lo, hi = g.amin(-1), g.amax(-1)
    scales = ((hi - lo) / 15).clamp(min=1e-6)
    zeros = lo + 8 * scales
    q = torch.round((g - lo[..., None]) / scales[..., None]).clamp(0, 15).to(torch.int32)
    return q.reshape(N, K), scales, zeros


def pack_nibbles(q: Tensor) -> Tensor:
    """int 0..15 ``[N, K]`` -> uint8 ``[N, K/2]``, even columns in the low nibble (the portable on-disk layout)."""
    q = q.to(torch.uint8)
    return q[:, 0::2] | (q[:, 1::2] << 4)


def unpack_nibbles(p: Tensor) -> Tensor:
    """Inverse of ``pack_nibbles``: uint8 ``[N, K/2]`` -> int32 ``[N, K]``."""
    return torch.stack((p & 15, p >> 4), dim=-1).reshape(p.shape[0], -1).to(torch.int32)


def dequantize_int4(packed: Tensor, scales: Tensor, zeros: Tensor) -> Tensor:
    """Float32 weights from the portable int4 tensors."""
    q = unpack_nibbles(packed).float()
    N, K = q.shape
    G = scales.shape[1]
    g = q.reshape(N, G, K // G)
    return ((g - 8) * scales.float()[..., None] + zeros.float()[..., None]).reshape(N, K)


def quantize_int8_channels(w: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric int8 per output channel with torchao's quantizer; returns ``q`` (int8 ``[N, K]``), ``scales`` ``[N]``."""
    from torchao.quantization.quant_primitives import MappingType, choose_qparams_affine, quantize_affine

    block = (1, w.shape[1])
    w = w.detach().float()
    scale, zero = choose_qparams_affine(w, MappingType.SYMMETRIC, block, torch.int8)
    q = quantize_affine(w, block, scale, zero, torch.int8)
    return q, scale.reshape(-1).float()


# ---------------------------------------------------------------------------------------------- runtime modules
class _RuntimeOnly:
    """Quantized modules hold the kernel's layout, not the portable one: save from the float model instead."""

    def _save_to_state_dict(self, destination: Any, prefix: str, keep_vars: bool) -> None:
        raise RuntimeError(
            f"{type(self).__name__} at {prefix!r} holds kernel-packed weights and cannot be re-saved; quantize the "
            "float checkpoint with deploy.quantize.save_quantized (python -m deploy.quantize ...)"
        )


def _aligned(x: Tensor) -> Tensor:
    """A contiguous, 64-byte aligned tensor (what PyTorch's packed CPU kernels assume)."""
    if not x.is_contiguous() or x.data_ptr() % 64:
        x = x.clone(memory_format=torch.contiguous_format)
    return x


class Int8Linear(_RuntimeOnly, nn.Module):
    """W8A16 linear: int8 weights with a per-output-channel scale; bfloat16 activations inside the matmul."""

    def __init__(
        self, in_features: int, out_features: int, bias: bool, out_dtype: torch.dtype = torch.float32
    ):
        super().__init__()
        self.in_features, self.out_features, self.out_dtype = in_features, out_features, out_dtype
        self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scales", torch.ones(out_features, dtype=ACT_DTYPE))
        self.bias = (
            nn.Parameter(torch.zeros(out_features, dtype=out_dtype), requires_grad=False) if bias else None
        )
        # PyTorch's CPU kernel gives wrong results when K is not a multiple of 16 (checked); fall back there
        self._kernel_ok = in_features % 16 == 0

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):  # type: ignore[override]
        w = state_dict.get(prefix + "weight")
        s = state_dict.get(prefix + "scales")
        if w is None or s is None:
            missing += [k for k in (prefix + "weight", prefix + "scales") if k not in state_dict]
            return
        # fresh copies: tensors read from a safetensors file are slices of one buffer, and PyTorch's int8 kernel
        # crashes on weights that are not 64-byte aligned (as a fresh allocation is)
        self.weight = w.to(device=self.scales.device, dtype=torch.int8).clone(
            memory_format=torch.contiguous_format
        )
        self.scales = s.to(device=self.weight.device, dtype=ACT_DTYPE).clone()
        if self.bias is not None:
            if prefix + "bias" not in state_dict:
                missing.append(prefix + "bias")
            else:
                self.bias.data = state_dict[prefix + "bias"].to(self.out_dtype)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        x2 = _aligned(x.reshape(-1, self.in_features).to(ACT_DTYPE))
        if self._kernel_ok and x2.device.type == "cpu" and x2.shape[0] <= SMALL_M:
            y = torch._weight_int8pack_mm(x2, self.weight, self.scales)
        else:  # same maths, one bf16 GEMM: int8 values are exact in bfloat16
            y = F.linear(x2, self.weight.to(ACT_DTYPE)) * self.scales
        y = y.to(self.out_dtype).reshape(*shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias


class Int4Linear(_RuntimeOnly, nn.Module):
    """W4A16 linear: 4-bit groups along K (tinygemm convention), packed for PyTorch's CPU int4 kernel."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool,
        group_size: int,
        out_dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        self.in_features, self.out_features, self.group_size, self.out_dtype = (
            in_features,
            out_features,
            group_size,
            out_dtype,
        )
        self.n_padded = (
            -(-out_features // 16) * 16
        )  # the kernel wants N divisible by 16: pad rows, slice them off
        self.register_buffer("packed", torch.zeros(0, dtype=torch.uint8))
        self.register_buffer("scales_and_zeros", torch.zeros(0, dtype=ACT_DTYPE))
        self.bias = (
            nn.Parameter(torch.zeros(out_features, dtype=out_dtype), requires_grad=False) if bias else None
        )

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):  # type: ignore[override]
        keys = [prefix + k for k in ("weight", "scales", "zeros")]
        if any(k not in state_dict for k in keys):
            missing += [k for k in keys if k not in state_dict]
            return
        packed, scales, zeros = (state_dict[k] for k in keys)
        q = unpack_nibbles(packed)
        pad = self.n_padded - self.out_features
        if pad:
            q = F.pad(q, (0, 0, 0, pad), value=8)
            scales, zeros = F.pad(scales, (0, 0, 0, pad)), F.pad(zeros, (0, 0, 0, pad))
        self.packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.contiguous(), 8)
        self.scales_and_zeros = (
            torch.stack((scales, zeros), dim=-1).transpose(0, 1).contiguous().to(ACT_DTYPE)
        )
        if self.bias is not None:
            if prefix + "bias" not in state_dict:
                missing.append(prefix + "bias")
            else:
                self.bias.data = state_dict[prefix + "bias"].to(self.out_dtype)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        x2 = _aligned(x.reshape(-1, self.in_features).to(ACT_DTYPE))
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(
            x2, self.packed, self.group_size, self.scales_and_zeros
        )
        y = y[:, : self.out_features].to(self.out_dtype).reshape(*shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias


class Int8Embedding(nn.Module):
    """Token embedding stored as int8 rows with one scale per row; looked-up rows are dequantized."""

    def __init__(self, num: int, dim: int, out_dtype: torch.dtype = torch.float32):
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.out_dtype = num, dim, out_dtype
        self.register_buffer("weight", torch.zeros(num, dim, dtype=torch.int8))
        self.register_buffer("scales", torch.ones(num, dtype=torch.float32))

    def forward(self, idx: Tensor) -> Tensor:
        return (self.weight[idx].float() * self.scales[idx, None]).to(self.out_dtype)


class Int4Embedding(nn.Module):
    """Token embedding stored as portable int4 groups (``pack_nibbles`` layout); looked-up rows are dequantized."""

    def __init__(self, num: int, dim: int, group_size: int, out_dtype: torch.dtype = torch.float32):
        super().__init__()
        self.num_embeddings, self.embedding_dim, self.group_size, self.out_dtype = (
            num,
            dim,
            group_size,
            out_dtype,
        )
        self.register_buffer("weight", torch.zeros(num, dim // 2, dtype=torch.uint8))
        self.register_buffer("scales", torch.ones(num, dim // group_size, dtype=ACT_DTYPE))
        self.register_buffer("zeros", torch.zeros(num, dim // group_size, dtype=ACT_DTYPE))

    def forward(self, idx: Tensor) -> Tensor:
        flat = idx.reshape(-1)
        w = dequantize_int4(self.weight[flat], self.scales[flat], self.zeros[flat])
        return w.to(self.out_dtype).reshape(*idx.shape, self.embedding_dim)


# ---------------------------------------------------------------------------------------------- schemes
def _conv1d_class() -> type | None:
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - transformers is installed with the llm extra
        return None
    return Conv1D


def _linear_shape(mod: nn.Module) -> tuple[int, int] | None:
    """(in, out) of a linear-like module (nn.Linear, or GPT-2's Conv1D whose weight is stored transposed)."""
    if isinstance(mod, nn.Linear):
        return mod.in_features, mod.out_features
    conv = _conv1d_class()
    if conv is not None and isinstance(mod, conv):
        return mod.weight.shape[0], mod.weight.shape[1]
    return None


def _linear_weight(mod: nn.Module) -> Tensor:
    w = mod.weight.detach()
    return w if isinstance(mod, nn.Linear) else w.t()


def _set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


@dataclass(frozen=True)
class WeightOnlyScheme:
    """A portable weight-only scheme: ``bits`` 8 (per channel) or 4 (groups of ``group_size`` along K)."""

    name: str
    bits: int
    group_size: int | None = None
    quantize_embeddings: bool = True
    in_memory_only = False

    def _eligible(self, mod: nn.Module) -> str | None:
        """'linear', 'embedding' or None for a module this scheme quantizes."""
        shape = _linear_shape(mod)
        if shape is not None:
            if self.bits == 4 and shape[0] % (self.group_size or 1):
                return None  # K not a multiple of the group: stays float (listed as skipped)
            return "linear"
        if isinstance(mod, nn.Embedding) and self.quantize_embeddings:
            if self.bits == 4 and mod.embedding_dim % (self.group_size or 1):
                return None
            return "embedding"
        return None

    def targets(self, model: nn.Module) -> Iterator[tuple[str, nn.Module, str]]:
        for name, mod in model.named_modules():
            kind = self._eligible(mod)
            if kind is not None:
                yield name, mod, kind

    def skipped(self, model: nn.Module) -> list[str]:
        return [
            n
            for n, m in model.named_modules()
            if (_linear_shape(m) is not None or isinstance(m, nn.Embedding)) and self._eligible(m) is None
        ]

    def _quantize_tensor(self, w: Tensor) -> dict[str, Tensor]:
        if self.bits == 8:
            q, s = quantize_int8_channels(w)
            return {"weight": q, "scales": s}
        q, s, z = quantize_int4_groups(w, self.group_size or 32)
        return {"weight": pack_nibbles(q), "scales": s.to(ACT_DTYPE), "zeros": z.to(ACT_DTYPE)}

    def create_quantized_state_dict(self, model: nn.Module) -> dict[str, Tensor]:
        """The model's state dict with every eligible module's float weight replaced by portable quantized tensors."""
        state = {k: v.detach() for k, v in model.state_dict().items()}
        done: dict[int, dict[str, Tensor]] = {}  # tied weights are quantized once
        for name, mod, kind in self.targets(model):
            w = _linear_weight(mod) if kind == "linear" else mod.weight.detach()
            key = id(mod.weight)
            if key not in done:
                done[key] = self._quantize_tensor(w)
            prefix = f"{name}." if name else ""
            state.pop(prefix + "weight", None)
            for leaf, t in done[key].items():
                state[prefix + leaf] = t
        return state

    def convert_for_runtime(self, model: nn.Module, quantized: set[str] | None = None) -> nn.Module:
        """Swap float modules for quantized ones (empty until ``load_state_dict``). ``quantized`` limits the swap
        to these module names (as read from a checkpoint); by default every eligible module is swapped."""
        for name, mod, kind in list(self.targets(model)):
            if quantized is not None and name not in quantized:
                continue
            dtype = mod.weight.dtype if mod.weight.is_floating_point() else torch.float32
            if kind == "linear":
                k, n = _linear_shape(mod)  # type: ignore[misc]
                has_bias = getattr(mod, "bias", None) is not None
                new: nn.Module = (
                    Int8Linear(k, n, has_bias, dtype)
                    if self.bits == 8
                    else Int4Linear(k, n, has_bias, self.group_size or 32, dtype)
                )
            else:
                new = (
                    Int8Embedding(mod.num_embeddings, mod.embedding_dim, dtype)
                    if self.bits == 8
                    else Int4Embedding(mod.num_embeddings, mod.embedding_dim, self.group_size or 32, dtype)
                )
            _set_module(model, name, new.to(mod.weight.device))
        return model


@dataclass(frozen=True)
class TorchAOScheme:
    """A torchao tensor-subclass scheme, kept as a measured reference (in memory only, linear layers only)."""

    name: str
    make_config: Callable[[], Any]
    in_memory_only = True
    quantize_embeddings = False

    def targets(self, model: nn.Module) -> Iterator[tuple[str, nn.Module, str]]:
        for name, mod in model.named_modules():
            if isinstance(mod, nn.Linear):
                yield name, mod, "linear"

    def skipped(self, model: nn.Module) -> list[str]:
        return [n for n, m in model.named_modules() if isinstance(m, nn.Embedding)]

    def create_quantized_state_dict(self, model: nn.Module) -> dict[str, Tensor]:
        from torchao.quantization import quantize_

        clone = copy.deepcopy(model)
        quantize_(clone, self.make_config(), filter_fn=lambda m, _: isinstance(m, nn.Linear))
        return clone.state_dict()

    def convert_for_runtime(self, model: nn.Module, quantized: set[str] | None = None) -> nn.Module:
        return model  # load_state_dict(assign=True) installs torchao's tensor subclasses as the weights


def _torchao_int8() -> Any:
    from torchao.quantization import Int8WeightOnlyConfig

    return Int8WeightOnlyConfig()


def _torchao_int4() -> Any:
    from torchao.quantization import IntxWeightOnlyConfig
    from torchao.quantization.granularity import PerGroup

    return IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(32))


SCHEMES: dict[str, Any] = {
    "int8": WeightOnlyScheme("int8", 8),
    "int4-g32": WeightOnlyScheme("int4-g32", 4, 32),
    "int4-g64": WeightOnlyScheme("int4-g64", 4, 64),
    "int4-g128": WeightOnlyScheme("int4-g128", 4, 128),
    "int8-torchao": TorchAOScheme("int8-torchao", _torchao_int8),
    "int4-torchao": TorchAOScheme("int4-torchao", _torchao_int4),
}
ALIASES = {"int4": "int4-g128"}  # the common default group (GPTQ, torchao, gpt-fast)


def get_scheme(name: str) -> Any:
    """The registered scheme called ``name`` (or an alias such as ``int4``), with a clear error otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"quantization scheme must be a string, got {type(name).__name__}")
    key = ALIASES.get(name, name)
    if key not in SCHEMES:
        known = sorted([*SCHEMES, *ALIASES])
        raise ValueError(f"unknown quantization scheme {name!r}; known schemes: {', '.join(known)}")
    return SCHEMES[key]


def quantize_model(model: nn.Module, scheme: str | Any) -> nn.Module:
    """Quantize ``model`` in place (any torch model: our ``Transformer`` or a transformers causal LM)."""
    s = get_scheme(scheme) if isinstance(scheme, str) else scheme
    state = s.create_quantized_state_dict(model)
    s.convert_for_runtime(model)
    model.load_state_dict(state, strict=True, assign=True)
    if getattr(getattr(model, "args", None), "tie_embeddings", False):
        pass  # tied float weights were quantized once and loaded into both modules
    model.quant_scheme = s.name
    return model


# ---------------------------------------------------------------------------------------------- bytes
def tensor_bytes(tensors: Iterator[Tensor] | list[Tensor]) -> int:
    """Bytes of distinct tensors (shared storage counted once); tensor subclasses count their inner tensors."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for t in tensors:
        inner = _inner_tensors(t)
        for x in inner:
            key = (x.untyped_storage().data_ptr(), x.storage_offset())
            if key in seen:
                continue
            seen.add(key)
            total += x.numel() * x.element_size()
    return total


def _inner_tensors(t: Tensor) -> list[Tensor]:
    flatten = getattr(type(t), "__tensor_flatten__", None)
    if flatten is None or type(t) in (Tensor, nn.Parameter):
        return [t]
    names, _ = t.__tensor_flatten__()
    out: list[Tensor] = []
    for n in names:
        out += _inner_tensors(getattr(t, n))
    return out


def model_weight_bytes(model: nn.Module) -> int:
    """Resident bytes of the model's parameters and buffers (no KV cache, no rotary tables)."""
    tensors = [p for p in model.parameters()] + [
        b for n, b in model.named_buffers() if not n.endswith("inv_freq")
    ]
    packed = sum(
        m.nbytes for m in model.modules() if type(m).__name__ == "PackedLinear"
    )  # opaque oneDNN weights
    return tensor_bytes(tensors) + packed


def state_dict_bytes(state: dict[str, Tensor]) -> int:
    """Bytes of a (portable) state dict with identical tied tensors counted once: the checkpoint's weight bytes."""
    return sum(t.numel() * t.element_size() for t in _dedup(state)[0].values())


def _dedup(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Drop tensors equal to an earlier one (tied weights); return the kept tensors and alias -> kept name."""
    kept: dict[str, Tensor] = {}
    aliases: dict[str, str] = {}
    by_ptr: dict[tuple[int, int, tuple[int, ...]], str] = {}
    by_content: dict[tuple[tuple[int, ...], torch.dtype], list[str]] = {}
    for name, t in state.items():
        t = t.detach()
        ptr = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if ptr in by_ptr:
            aliases[name] = by_ptr[ptr]
            continue
        same = next(
            (k for k in by_content.get((tuple(t.shape), t.dtype), []) if torch.equal(kept[k], t)), None
        )
        if same is not None and t.numel() > 1024:
            aliases[name] = same
            continue
        kept[name] = t.contiguous()
        by_ptr[ptr] = name
        by_content.setdefault((tuple(t.shape), t.dtype), []).append(name)
    return kept, aliases


# ---------------------------------------------------------------------------------------------- save / load
def save_quantized(
    model: str | Path | nn.Module, out: str | Path, scheme: str, *, tokenizer: Any = None
) -> Path:
    """Quantize a transformers causal LM (a local folder or a loaded model) and save a loadable folder.

    The folder holds the model's ``config.json``, the tokenizer (when given or found beside the model),
    ``model.safetensors`` with the portable quantized tensors under transformers' names, and ``quantization.json``
    naming the scheme. ``deploy.model.load_transformer`` and ``load_quantized_hf`` read it back.
    """
    from safetensors.torch import save_file

    s = get_scheme(scheme)
    if s.in_memory_only:
        raise ValueError(
            f"scheme {s.name!r} is a torchao reference kept in memory only; save with one of "
            f"{', '.join(k for k, v in SCHEMES.items() if not v.in_memory_only)}"
        )
    src = None
    if isinstance(model, (str, Path)):
        src = Path(model)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from .model import load_hf_config

        load_hf_config(src)  # clear errors for a missing folder or config
        hf = AutoModelForCausalLM.from_pretrained(src, local_files_only=True, dtype=torch.float32)
        if tokenizer is None:
            tokenizer = AutoTokenizer.from_pretrained(src, local_files_only=True)
    else:
        hf = model
    if not hasattr(hf, "config") or not hasattr(hf.config, "save_pretrained"):
        raise TypeError("save_quantized needs a transformers model (with .config) or the path of one")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = s.create_quantized_state_dict(hf)
    kept, aliases = _dedup(state)
    save_file(kept, str(out / WEIGHTS_FILE), metadata={"format": "pt", "quantization": s.name})
    hf.config.save_pretrained(out)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    quantized = sorted(name for name, _, _ in s.targets(hf))
    meta = {
        "format_version": FORMAT_VERSION,
        "scheme": s.name,
        "bits": s.bits,
        "group_size": s.group_size,
        "names": "transformers",
        "quantized_modules": quantized,
        "skipped_modules": s.skipped(hf),
        "aliases": aliases,
        "weight_bytes": state_dict_bytes(kept),
        "source": str(src) if src else None,
    }
    (out / QUANT_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return out


def read_quantized(path: str | Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """``quantization.json`` and the full portable state dict (tied aliases restored) of a saved folder."""
    from safetensors.torch import load_file

    p = Path(path)
    meta_path = p / QUANT_FILE
    if not meta_path.exists():
        raise FileNotFoundError(
            f"{str(p)!r} has no {QUANT_FILE}: not a quantized checkpoint (see deploy.quantize)"
        )
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{meta_path}: format_version {meta.get('format_version')!r}, this code reads {FORMAT_VERSION}"
        )
    get_scheme(meta["scheme"])  # unknown scheme -> clear error
    if not (p / WEIGHTS_FILE).exists():
        raise FileNotFoundError(f"{str(p)!r} has {QUANT_FILE} but no {WEIGHTS_FILE}")
    state = load_file(str(p / WEIGHTS_FILE))
    for alias, name in meta.get("aliases", {}).items():
        state[alias] = state[name]
    return meta, state


def load_quantized_hf(path: str | Path) -> nn.Module:
    """A transformers model with quantized modules from a folder written by ``save_quantized``."""
    from transformers import AutoConfig, AutoModelForCausalLM

    meta, state = read_quantized(path)
    scheme = get_scheme(meta["scheme"])
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    scheme.convert_for_runtime(model, set(meta["quantized_modules"]))
    model.load_state_dict(state, strict=False, assign=True)
    _check_loaded(model, state)
    model.quant_scheme = scheme.name
    return model.eval()


def load_quantized_transformer(
    path: Path, config: Any, *, dtype: torch.dtype, device: str = "cpu"
) -> nn.Module:
    """Our ``Transformer`` from a ``save_quantized`` folder: q/k/v and gate/up rows are concatenated as they load."""
    from .model import ModelArgs, Transformer, convert_hf_state_dict, rope_frequencies

    meta, state = read_quantized(path)
    scheme = get_scheme(meta["scheme"])
    args = ModelArgs.from_hf_config(config)
    model = Transformer(args, rope_frequencies(config, args)).to(dtype)
    ours = convert_hf_state_dict(state, args)
    quantized = {
        k.rsplit(".", 1)[0] for k, v in ours.items() if k.endswith(".weight") and not v.is_floating_point()
    }
    scheme.convert_for_runtime(model, quantized)
    missing, unexpected = model.load_state_dict(ours, strict=False, assign=True)
    if unexpected or [m for m in missing if not m.endswith("inv_freq")]:
        raise ValueError(
            f"{path}: quantized checkpoint does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    model.hf_config = config
    model.quant_scheme = scheme.name
    return model.to(device).eval()


def _check_loaded(model: nn.Module, state: dict[str, Tensor]) -> None:
    names = {n for n, _ in model.named_parameters()} | {n for n, _ in model.named_buffers()}
    absent = [
        n for n in names if n not in state and not n.endswith(("inv_freq", "packed", "scales_and_zeros"))
    ]
    if absent:
        raise ValueError(f"quantized checkpoint lacks {absent[:5]}")


# ---------------------------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    """``python -m deploy.quantize --model PATH --scheme int4-g32 --out PATH``."""
    import argparse

    ap = argparse.ArgumentParser(
        description="Quantize a local transformers causal LM (weight-only) and save it."
    )
    ap.add_argument("--model", required=True, help="local model folder (save_pretrained)")
    ap.add_argument("--scheme", required=True, help=f"one of {', '.join(sorted([*SCHEMES, *ALIASES]))}")
    ap.add_argument("--out", required=True, help="output folder")
    args = ap.parse_args(argv)
    out = save_quantized(args.model, args.out, args.scheme)
    meta = json.loads((out / QUANT_FILE).read_text())
    print(
        f"{meta['scheme']}: {len(meta['quantized_modules'])} modules, {meta['weight_bytes'] / 1e6:.2f} MB -> {out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
