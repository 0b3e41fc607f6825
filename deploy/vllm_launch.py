"""Print (default) or run the ``vllm serve`` command for a clinic-env deployment; or print ``vllm.LLM`` kwargs.

    python -m deploy.vllm_launch --model ckpt/doctor-w4a16 --kv-cache-dtype fp8 \\
        --spec eagle3 --draft ckpt/doctor-eagle3 --num-spec-tokens 3 --max-model-len 8192
    python -m deploy.vllm_launch --model ckpt/doctor --spec ngram --prompt-lookup-max 4 --llm-kwargs
    python -m deploy.vllm_launch --model ckpt/doctor --run          # exec `vllm serve ...` (GPU machine)

Settings are validated first (``deploy/vllm.py``); a bad combination exits with status 2 and says what to change.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

from .vllm import (
    KV_CACHE_DTYPES,
    QUANT_METHODS,
    SPEC_METHODS,
    SpeculativeSettings,
    VLLMConfigError,
    VLLMSettings,
    build_llm_kwargs,
    build_serve_args,
    shell_command,
)


def parse_settings(argv: list[str] | None = None) -> tuple[VLLMSettings, argparse.Namespace]:
    """Command-line options -> validated :class:`VLLMSettings` (raises ``VLLMConfigError``)."""
    ap = argparse.ArgumentParser(prog="python -m deploy.vllm_launch", description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="target checkpoint: local folder or hub id")
    ap.add_argument(
        "--quant",
        default="auto",
        help=f"'auto' (read config.json), 'none', or one of {', '.join(QUANT_METHODS)}",
    )
    ap.add_argument("--kv-cache-dtype", default="auto", choices=KV_CACHE_DTYPES)
    ap.add_argument("--spec", choices=SPEC_METHODS, help="speculative decoding method")
    ap.add_argument("--draft", help="draft model / EAGLE head (draft_model, eagle, eagle3)")
    ap.add_argument("--num-spec-tokens", type=int, default=4, help="tokens proposed per step")
    ap.add_argument("--prompt-lookup-min", type=int)
    ap.add_argument("--prompt-lookup-max", type=int)
    ap.add_argument("--draft-tp", type=int, help="draft_tensor_parallel_size")
    ap.add_argument("--tp", type=int, default=1, help="tensor_parallel_size")
    ap.add_argument("--max-model-len", type=int)
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--served-model-name")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--run", action="store_true", help="exec `vllm serve` instead of printing it")
    mode.add_argument("--llm-kwargs", action="store_true", help="print vllm.LLM(**kwargs) as JSON instead")
    mode.add_argument("--argv", action="store_true", help="print the argv as a JSON list")
    a = ap.parse_args(argv)
    if a.spec is None and (a.draft or a.prompt_lookup_min or a.prompt_lookup_max or a.draft_tp):
        raise VLLMConfigError(
            "--draft/--prompt-lookup-*/--draft-tp need --spec (draft_model, eagle, eagle3, ngram)"
        )
    spec = None
    if a.spec:
        spec = SpeculativeSettings(
            method=a.spec,
            model=a.draft,
            num_speculative_tokens=a.num_spec_tokens,
            prompt_lookup_min=a.prompt_lookup_min,
            prompt_lookup_max=a.prompt_lookup_max,
            draft_tensor_parallel_size=a.draft_tp,
        )
    settings = VLLMSettings(
        model=a.model,
        quantization=None if a.quant.lower() == "none" else a.quant,
        kv_cache_dtype=a.kv_cache_dtype,
        speculative=spec,
        tensor_parallel_size=a.tp,
        max_model_len=a.max_model_len,
        gpu_memory_utilization=a.gpu_memory_utilization,
        dtype=a.dtype,
        served_model_name=a.served_model_name,
        seed=a.seed,
        host=a.host,
        port=a.port,
    )
    return settings, a


def main(argv: list[str] | None = None) -> int:
    try:
        settings, a = parse_settings(argv)
    except VLLMConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if a.llm_kwargs:
        print(json.dumps(build_llm_kwargs(settings), indent=2))
        return 0
    if a.argv:
        print(json.dumps(build_serve_args(settings)))
        return 0
    if not a.run:
        print(shell_command(settings))
        return 0
    exe = shutil.which("vllm")
    if exe is None:
        print(
            "error: the `vllm` command is not installed here; on a GPU machine: pip install 'clinic-env[vllm]'",
            file=sys.stderr,
        )
        return 2
    argv_run = build_serve_args(settings, executable=exe)
    print(shell_command(settings), file=sys.stderr, flush=True)
    os.execv(exe, argv_run)  # replaces this process; returns only on failure (raises OSError)
    return 1  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
