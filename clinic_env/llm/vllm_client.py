"""A ``ChatModel`` over an in-process ``vllm.LLM`` (``vllm:PATH``); GPU machines only.

vllm is imported when the model is built, never at ``import clinic_env``. On a machine without vllm the constructor
raises an ImportError that names the extra to install; the rest of the project does not need it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import Message, Usage, check_batch


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


class VLLMChatModel:
    def __init__(self, path: str, *, llm: Any = None, **llm_kwargs: Any):
        """Build ``vllm.LLM(model=path, **llm_kwargs)``; or wrap an existing ``llm`` object."""
        if llm is None:
            try:
                from vllm import LLM
            except ImportError as exc:
                raise ImportError(
                    "vllm is not installed: VLLMChatModel runs on GPU machines with `pip install 'clinic-env[vllm]'`; "
                    "on a CPU machine use hf:PATH or openai:MODEL@URL instead"
                ) from exc
            llm = LLM(model=path, **llm_kwargs)
        self.llm = llm
        self.name = f"vllm:{path}"
        self.usage = Usage()

    def _sampling_params(self, *, max_tokens: int, temperature: float, seed: int | None) -> Any:
        from vllm import SamplingParams

        return SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=seed)

    def generate(
        self,
        batch: Sequence[Sequence[Message]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> list[str]:
        check_batch(batch)
        params = self._sampling_params(max_tokens=max_tokens, temperature=temperature, seed=seed)
        outputs = self.llm.chat([list(conv) for conv in batch], params, use_tqdm=False)
        texts = [o.outputs[0].text for o in outputs]
        self.usage.record(
            requests=len(batch),
            prompt_tokens=sum(len(o.prompt_token_ids or ()) for o in outputs),
            completion_tokens=sum(len(o.outputs[0].token_ids) for o in outputs),
        )
        return texts
