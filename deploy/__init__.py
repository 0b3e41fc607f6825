"""The policy runtime: a compact Llama forward with a per-row KV cache (``model``), batched plain and speculative
decoding (``generate``, ``speculative``), weight-only quantization (``quantize``), the ``ChatModel`` engine
(``engine``), draft distillation (``distill``), tiny models and the transcript corpus (``tiny``, ``corpus``), and the
OpenAI-compatible server (``server``). Modules import torch and transformers themselves; importing ``deploy`` does
not.
"""
