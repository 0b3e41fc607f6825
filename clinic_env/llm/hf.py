"""A ``ChatModel`` over a local transformers causal LM (``hf:PATH``): chat template, left padding, batched generate.

Models load from a local path only (``local_files_only``): these machines reach no model hub.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .base import LLMError, Message, Usage, check_batch

# Used only when a tokenizer ships without a chat template (e.g. a tiny test tokenizer).
FALLBACK_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

_DTYPES = ("auto", "float32", "bfloat16", "float16")


class TransformersChatModel:
    def __init__(
        self,
        path: str | Path,
        *,
        dtype: str = "auto",
        device: str = "auto",
        trust_remote_code: bool = False,
        model: Any = None,
        tokenizer: Any = None,
    ):
        """Load from ``path``; or wrap an already built ``model`` and ``tokenizer`` (then ``path`` is a label)."""
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError(
                "TransformersChatModel needs torch and transformers: pip install 'clinic-env[llm]'"
            ) from exc
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
        self._torch = torch
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.name = f"hf:{path}"
        if model is None or tokenizer is None:
            p = Path(path)
            if not p.exists():
                raise FileNotFoundError(
                    f"model path {str(p)!r} does not exist (models load from local paths only)"
                )
            if not (p / "config.json").exists():
                raise LLMError(f"{str(p)!r} has no config.json: not a transformers model folder")
            torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
            tokenizer = AutoTokenizer.from_pretrained(
                p, local_files_only=True, trust_remote_code=trust_remote_code
            )
            model = AutoModelForCausalLM.from_pretrained(
                p, local_files_only=True, dtype=torch_dtype, trust_remote_code=trust_remote_code
            )
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if not getattr(self.tokenizer, "chat_template", None):
            self.tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
        self.usage = Usage()

    def render(self, conversation: Sequence[Message]) -> str:
        """The prompt text for one conversation, ending where the assistant's reply begins."""
        return self.tokenizer.apply_chat_template(
            list(conversation), tokenize=False, add_generation_prompt=True
        )

    def generate(
        self,
        batch: Sequence[Sequence[Message]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> list[str]:
        check_batch(batch)
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        torch = self._torch
        prompts = [self.render(conv) for conv in batch]
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(
            self.device
        )
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "do_sample": temperature > 0,
        }
        if temperature > 0:
            kwargs.update(temperature=temperature, top_k=0, top_p=1.0)
        devices = [torch.cuda.current_device()] if self.device.startswith("cuda") else []
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            out = self.model.generate(**enc, **kwargs)
        new = out[:, enc["input_ids"].shape[1] :]
        eos = self.tokenizer.eos_token_id
        texts, n_completion = [], 0
        for row in new.tolist():
            if eos is not None and eos in row:
                row = row[: row.index(eos)]
            row = [t for t in row if t != self.tokenizer.pad_token_id or t == eos]
            n_completion += len(row)
            texts.append(self.tokenizer.decode(row, skip_special_tokens=True).strip())
        self.usage.record(
            requests=len(batch),
            prompt_tokens=int(enc["attention_mask"].sum()),
            completion_tokens=n_completion,
        )
        return texts
