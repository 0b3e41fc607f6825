"""``LLMDoctor``: any :class:`clinic_env.llm.ChatModel` as the doctor, with a system prompt.

Stateless: each turn it rebuilds the conversation from ``info["messages"]`` (patient = user, doctor = assistant),
so one instance serves a whole vector of environments through :meth:`act_batch` in one batched ``generate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SYSTEM_PROMPT = (
    "You are a careful, kind doctor in a consultation. Take a focused history one or two questions at a time, "
    "ask sensitive questions tactfully, then examine and order only the tests that help. Request them on their "
    "own line as 'EXAM: <systems>' and 'TEST: <tests>'; results come back as [examiner] lines. When you are "
    "ready, give 'DIAGNOSIS: <most likely diagnosis and key differentials>' and 'PLAN: <treatment, urgency or "
    "referral, safety-netting>' in plain language the patient understands. Check allergies, medicines and "
    "pregnancy before prescribing. Reply with your next utterance only."
)


class LLMDoctor:
    def __init__(
        self,
        model: Any,
        *,
        system_prompt: str = SYSTEM_PROMPT,
        max_tokens: int = 200,
        temperature: float = 0.0,
        seed: int | None = 0,
    ):
        """``model``: a ``ChatModel`` or a model spec string (``hf:PATH``, ``openai:MODEL@URL``, ``vllm:PATH``)."""
        if isinstance(model, str):
            from clinic_env.llm import load_chat_model

            model = load_chat_model(model)
        if not hasattr(model, "generate"):
            raise TypeError(f"model must be a ChatModel or a model spec string, got {type(model).__name__}")
        self.model = model
        self.system_prompt = system_prompt
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.seed = seed

    def reset(self) -> None:
        """Nothing to reset: the conversation comes from ``info`` each turn."""

    def conversation(self, observation: str, info: dict[str, Any]) -> list[dict[str, str]]:
        messages = info.get("messages")
        if not messages:
            messages = [{"role": "user", "content": observation}]
        return [{"role": "system", "content": self.system_prompt}, *({**m} for m in messages)]

    def act(self, observation: str, info: dict[str, Any]) -> str:
        return self.act_batch([observation], [info])[0]

    def act_batch(self, observations: Sequence[str], infos: Sequence[dict[str, Any]]) -> list[str]:
        batch = [self.conversation(o, i) for o, i in zip(observations, infos, strict=True)]
        replies = self.model.generate(
            batch, max_tokens=self.max_tokens, temperature=self.temperature, seed=self.seed
        )
        # An empty reply would be an empty action; say something neutral instead so the episode continues.
        return [r.strip() or "Could you tell me more about that?" for r in replies]
