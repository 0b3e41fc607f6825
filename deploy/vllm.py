"""vLLM launch settings: ``vllm serve`` arguments and ``vllm.LLM(**kwargs)`` for clinic-env's deployment recipes.

Quantized checkpoints (GPTQ, AWQ, compressed-tensors), an FP8 KV cache, and speculative decoding with a draft
model, an EAGLE-3 head or n-gram prompt lookup, plus tensor parallelism, context length and GPU memory share.
Everything here builds and validates plain data; nothing imports vllm (``make_vllm_chat_model`` does, when called).

    python -m deploy.vllm_launch --model PATH --kv-cache-dtype fp8 --spec eagle3 --draft HEAD_PATH   # print
    python -m deploy.vllm_launch ... --run                                                            # exec it

Flag names and JSON keys follow vLLM's documentation:
- ``--speculative-config`` schema (``method``, ``model``, ``num_speculative_tokens``, ``draft_tensor_parallel_size``,
  ``prompt_lookup_min``/``prompt_lookup_max``): https://docs.vllm.ai/en/latest/features/speculative_decoding/
  (docs/features/speculative_decoding/README.md, "--speculative-config schema"); ``"method": "draft_model"``:
  https://docs.vllm.ai/en/latest/features/speculative_decoding/draft_model/ ; ``eagle3``:
  https://docs.vllm.ai/en/latest/features/speculative_decoding/eagle/
- ``--quantization`` names (``gptq``, ``awq``, ``compressed-tensors``, ``gptq_marlin``, ``awq_marlin``, ``fp8``) are
  those of ``vllm/model_executor/layers/quantization/__init__.py``; ``--kv-cache-dtype``, ``--tensor-parallel-size``,
  ``--max-model-len``, ``--gpu-memory-utilization``: https://docs.vllm.ai/en/latest/configuration/engine_args/
Drafting with a separate draft model needs vLLM > 0.10.0 (the docs above: "not supported in vllm<=0.10.0").

Not run here: this project's CI machines have no GPU and no vllm; the unit tests check the construction only.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# vLLM's names for checkpoint formats it loads (a subset: the ones our deployment recipes produce or consume)
QUANT_METHODS = ("gptq", "awq", "compressed-tensors", "gptq_marlin", "awq_marlin", "fp8")
# what a checkpoint's config.json says (quantization_config.quant_method) -> vLLM's --quantization name
CHECKPOINT_QUANT = {"gptq": "gptq", "awq": "awq", "compressed-tensors": "compressed-tensors", "fp8": "fp8"}
# names that load the same checkpoint format with another kernel
_SAME_FORMAT = {"gptq_marlin": "gptq", "awq_marlin": "awq"}
KV_CACHE_DTYPES = ("auto", "fp8", "fp8_e4m3", "fp8_e5m2")
SPEC_METHODS = ("draft_model", "eagle", "eagle3", "ngram")
_NEEDS_DRAFT = ("draft_model", "eagle", "eagle3")
DTYPES = ("auto", "half", "float16", "bfloat16", "float", "float32")


class VLLMConfigError(ValueError):
    """A launch setting that vLLM would refuse or misread; the message says which and what to do."""


def _looks_local(ref: str) -> bool:
    """Whether ``ref`` is meant as a local path (rather than a hub id such as ``org/name``)."""
    return ref.startswith(("/", "./", "../", "~")) or Path(ref).expanduser().exists()


def _check_local(ref: str, what: str) -> None:
    if _looks_local(ref) and not Path(ref).expanduser().exists():
        raise VLLMConfigError(f"{what} path {ref!r} does not exist")


def read_checkpoint_quantization(model: str | Path) -> str | None:
    """vLLM's ``--quantization`` name for a local checkpoint, from ``config.json``'s ``quantization_config``.

    ``None`` when the checkpoint is not quantized or is not a local folder (vLLM then decides by itself).
    Raises :class:`VLLMConfigError` for a quantization format this module does not know.
    """
    cfg_path = Path(model).expanduser() / "config.json"
    if not cfg_path.is_file():
        return None
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise VLLMConfigError(f"{cfg_path}: cannot read it as JSON ({exc})") from None
    qc = cfg.get("quantization_config") if isinstance(cfg, dict) else None
    if not qc:
        return None
    method = qc.get("quant_method") if isinstance(qc, dict) else None
    if not isinstance(method, str):
        raise VLLMConfigError(f"{cfg_path}: quantization_config has no quant_method string: {qc!r:.120}")
    if method not in CHECKPOINT_QUANT:
        raise VLLMConfigError(
            f"{cfg_path}: quantization_config.quant_method is {method!r}; this launcher knows "
            f"{', '.join(CHECKPOINT_QUANT)} (pass quantization=None to let vLLM decide)"
        )
    return CHECKPOINT_QUANT[method]


@dataclass(frozen=True)
class SpeculativeSettings:
    """vLLM's ``speculative_config``: ``method`` is one of ``SPEC_METHODS``.

    ``draft_model`` (a small model of the same vocabulary), ``eagle``/``eagle3`` (an EAGLE head trained for the
    target) need ``model``; ``ngram`` (prompt lookup) must not have one and may set the lookup window.
    """

    method: str
    model: str | None = None
    num_speculative_tokens: int = 4
    prompt_lookup_min: int | None = None
    prompt_lookup_max: int | None = None
    draft_tensor_parallel_size: int | None = None

    def __post_init__(self) -> None:
        if self.method not in SPEC_METHODS:
            raise VLLMConfigError(
                f"speculative method {self.method!r} is unknown; expected one of {', '.join(SPEC_METHODS)}"
            )
        if self.method in _NEEDS_DRAFT:
            if not self.model:
                what = "an EAGLE head checkpoint" if self.method.startswith("eagle") else "a draft model"
                raise VLLMConfigError(
                    f"speculative method {self.method!r} needs {what}: pass its path as model"
                )
            _check_local(self.model, f"{self.method} draft")
        elif self.model:
            raise VLLMConfigError(
                "speculative method 'ngram' looks up the prompt and takes no model; drop it"
            )
        if not isinstance(self.num_speculative_tokens, int) or self.num_speculative_tokens < 1:
            raise VLLMConfigError(
                f"num_speculative_tokens must be an integer >= 1, got {self.num_speculative_tokens!r}"
            )
        lookups = (self.prompt_lookup_min, self.prompt_lookup_max)
        if self.method != "ngram" and any(v is not None for v in lookups):
            raise VLLMConfigError("prompt_lookup_min/max apply to method 'ngram' only")
        for name, v in zip(("prompt_lookup_min", "prompt_lookup_max"), lookups, strict=True):
            if v is not None and (not isinstance(v, int) or v < 1):
                raise VLLMConfigError(f"{name} must be an integer >= 1, got {v!r}")
        if None not in lookups and lookups[0] > lookups[1]:  # type: ignore[operator]
            raise VLLMConfigError(
                f"prompt_lookup_min ({lookups[0]}) is larger than prompt_lookup_max ({lookups[1]})"
            )
        if self.draft_tensor_parallel_size is not None:
            if self.method == "ngram":
                raise VLLMConfigError(
                    "draft_tensor_parallel_size applies to model-based methods, not 'ngram'"
                )
            if self.draft_tensor_parallel_size < 1:
                raise VLLMConfigError(
                    f"draft_tensor_parallel_size must be >= 1, got {self.draft_tensor_parallel_size}"
                )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object for ``--speculative-config`` / ``LLM(speculative_config=...)``."""
        out: dict[str, Any] = {"method": self.method}
        if self.model:
            out["model"] = self.model
        out["num_speculative_tokens"] = self.num_speculative_tokens
        for key in ("prompt_lookup_min", "prompt_lookup_max", "draft_tensor_parallel_size"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@dataclass(frozen=True)
class VLLMSettings:
    """One vLLM deployment: the target model and how to run it.

    ``quantization="auto"`` reads the checkpoint's ``config.json`` (see :func:`read_checkpoint_quantization`);
    an explicit name must agree with what the checkpoint says; ``None`` leaves the flag out.
    """

    model: str
    quantization: str | None = "auto"
    kv_cache_dtype: str = "auto"
    speculative: SpeculativeSettings | None = None
    tensor_parallel_size: int = 1
    max_model_len: int | None = None
    gpu_memory_utilization: float = 0.9
    dtype: str = "auto"
    served_model_name: str | None = None
    seed: int | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    extra_args: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.model:
            raise VLLMConfigError("model is empty: pass a local checkpoint folder or a hub id")
        _check_local(self.model, "model")
        if self.kv_cache_dtype not in KV_CACHE_DTYPES:
            raise VLLMConfigError(
                f"kv_cache_dtype {self.kv_cache_dtype!r} is unknown; expected one of {', '.join(KV_CACHE_DTYPES)}"
            )
        if self.dtype not in DTYPES:
            raise VLLMConfigError(f"dtype {self.dtype!r} is unknown; expected one of {', '.join(DTYPES)}")
        if not isinstance(self.tensor_parallel_size, int) or self.tensor_parallel_size < 1:
            raise VLLMConfigError(
                f"tensor_parallel_size must be an integer >= 1, got {self.tensor_parallel_size!r}"
            )
        if self.max_model_len is not None and (
            not isinstance(self.max_model_len, int) or self.max_model_len < 1
        ):
            raise VLLMConfigError(f"max_model_len must be an integer >= 1, got {self.max_model_len!r}")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise VLLMConfigError(
                f"gpu_memory_utilization is a share of GPU memory in (0, 1], got {self.gpu_memory_utilization!r}"
            )
        if not 0 < self.port < 65536:
            raise VLLMConfigError(f"port must be in 1..65535, got {self.port}")
        if self.quantization not in (None, "auto") and self.quantization not in QUANT_METHODS:
            raise VLLMConfigError(
                f"quantization {self.quantization!r} is unknown; expected one of {', '.join(QUANT_METHODS)}, "
                "'auto' (read config.json) or None"
            )
        self.resolved_quantization()  # checks an explicit name against the checkpoint
        draft_tp = self.speculative.draft_tensor_parallel_size if self.speculative else None
        if draft_tp is not None and draft_tp > self.tensor_parallel_size:
            raise VLLMConfigError(
                f"draft_tensor_parallel_size ({draft_tp}) cannot exceed "
                f"tensor_parallel_size ({self.tensor_parallel_size})"
            )

    def resolved_quantization(self) -> str | None:
        """The ``--quantization`` value to pass, or ``None`` to leave it out."""
        if self.quantization is None:
            return None
        found = read_checkpoint_quantization(self.model)
        if self.quantization == "auto":
            return found
        if found is not None and _SAME_FORMAT.get(self.quantization, self.quantization) != found:
            raise VLLMConfigError(
                f"quantization={self.quantization!r} but {self.model}/config.json says the checkpoint is {found!r}; "
                "use 'auto' or the checkpoint's format"
            )
        return self.quantization


def build_llm_kwargs(s: VLLMSettings) -> dict[str, Any]:
    """Keyword arguments for ``vllm.LLM(**kwargs)`` (the in-process engine)."""
    kw: dict[str, Any] = {"model": s.model, "tensor_parallel_size": s.tensor_parallel_size}
    q = s.resolved_quantization()
    if q is not None:
        kw["quantization"] = q
    if s.kv_cache_dtype != "auto":
        kw["kv_cache_dtype"] = s.kv_cache_dtype
    if s.dtype != "auto":
        kw["dtype"] = s.dtype
    if s.max_model_len is not None:
        kw["max_model_len"] = s.max_model_len
    kw["gpu_memory_utilization"] = s.gpu_memory_utilization
    if s.speculative is not None:
        kw["speculative_config"] = s.speculative.to_dict()
    if s.seed is not None:
        kw["seed"] = s.seed
    return kw


def build_serve_args(s: VLLMSettings, executable: str = "vllm") -> list[str]:
    """The ``vllm serve`` command line (argv) for the same settings, ready for ``subprocess``/``os.execvp``."""
    argv = [executable, "serve", s.model, "--host", s.host, "--port", str(s.port)]
    kw = build_llm_kwargs(s)
    for key in (
        "quantization",
        "kv_cache_dtype",
        "dtype",
        "tensor_parallel_size",
        "max_model_len",
        "gpu_memory_utilization",
        "seed",
    ):
        if key in kw:
            argv += ["--" + key.replace("_", "-"), str(kw[key])]
    if s.served_model_name:
        argv += ["--served-model-name", s.served_model_name]
    if "speculative_config" in kw:
        argv += ["--speculative-config", json.dumps(kw["speculative_config"], separators=(",", ":"))]
    return argv + list(s.extra_args)


def shell_command(s: VLLMSettings) -> str:
    """The ``vllm serve`` command as one shell-quoted line (to print, log or paste)."""
    return shlex.join(build_serve_args(s))


def make_vllm_chat_model(s: VLLMSettings) -> Any:
    """An in-process ``clinic_env.llm.vllm_client.VLLMChatModel`` with these settings (imports vllm; GPU only)."""
    from clinic_env.llm.vllm_client import VLLMChatModel

    kw = build_llm_kwargs(s)
    return VLLMChatModel(kw.pop("model"), **kw)
