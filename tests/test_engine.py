"""deploy.engine.Engine: the ChatModel contract, batching, speculative and quantized engines, stop strings, seeds,
streaming, counters, and clear errors for bad arguments."""

from __future__ import annotations

import shutil

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from clinic_env.llm.base import ChatModel  # noqa: E402
from deploy.engine import Engine  # noqa: E402

CONV = [{"role": "user", "content": "I have had chest pain since this morning."}]
CONV2 = [
    {"role": "system", "content": "You are a doctor."},
    {"role": "user", "content": "My knee is swollen."},
    {"role": "assistant", "content": "Since when?"},
    {"role": "user", "content": "Two days."},
]
PROMPTS = ["Hello doctor, I feel", "The patient reports", "EXAM: chest"]


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def engine(tiny_model_path):
    return Engine(tiny_model_path, max_batch=2)


@pytest.fixture(scope="module")
def same_tokenizer_draft(tiny_model_path, tmp_path_factory):
    """A different random model (1 layer) with the target's tokenizer: a legal draft."""
    from transformers import AutoTokenizer

    from tests.tiny_models import build_tiny_llama

    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    path = tmp_path_factory.mktemp("draft")
    build_tiny_llama(tok, hidden=32, layers=1, heads=2, seed=3).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_engine_is_a_chat_model(engine):
    assert isinstance(engine, ChatModel)
    assert engine.model_name and engine.name.startswith("engine:")
    before = engine.usage.requests
    out = engine.generate([CONV, CONV2], max_tokens=8)
    assert len(out) == 2 and all(isinstance(t, str) for t in out)
    assert engine.usage.requests == before + 2
    stats = engine.stats()
    assert set(stats) == {
        "spec_decode_num_drafts",
        "spec_decode_num_draft_tokens",
        "spec_decode_num_accepted_tokens",
        "prompt_tokens",
        "generation_tokens",
        "requests",
    }
    assert stats["requests"] >= 2 and stats["prompt_tokens"] > 0 and stats["generation_tokens"] > 0
    assert engine.generate([], max_tokens=4) == []


def test_batched_generation_matches_one_by_one(engine):
    together = engine.complete(
        PROMPTS, max_tokens=12, temperature=0.0, seed=None
    )  # max_batch=2: split in two
    alone = [engine.complete([p], max_tokens=12, temperature=0.0, seed=None)[0] for p in PROMPTS]
    assert together == alone
    assert engine.generate([CONV, CONV2], max_tokens=10) == [
        engine.generate([CONV], max_tokens=10)[0],
        engine.generate([CONV2], max_tokens=10)[0],
    ]


@pytest.mark.parametrize("kind", ["self", "separate"])
def test_speculative_engine_gives_the_same_greedy_text(tiny_model_path, same_tokenizer_draft, engine, kind):
    spec = (
        Engine(tiny_model_path, self_draft_layers=1, gamma=3)
        if kind == "self"
        else Engine(tiny_model_path, draft=same_tokenizer_draft, gamma=2)
    )
    assert spec.complete(PROMPTS, max_tokens=20, temperature=0.0, seed=None) == engine.complete(
        PROMPTS, max_tokens=20, temperature=0.0, seed=None
    )
    s = spec.stats()
    assert s["spec_decode_num_drafts"] > 0
    last = spec.last_stats  # the last call's SpecStats: what the benchmark reports per run
    assert last.rounds > 0 and 0 <= last.alpha <= 1 and 1 <= last.mean_accepted_length <= spec.gamma + 1
    assert s["spec_decode_num_draft_tokens"] == spec.gamma * s["spec_decode_num_drafts"]
    assert 0 <= s["spec_decode_num_accepted_tokens"] <= s["spec_decode_num_draft_tokens"]


def test_stop_strings_cut_the_text(engine):
    free = engine.complete(["Hello doctor"], max_tokens=40, temperature=1.0, seed=7)[0]
    assert len(free) > 12
    stop = free[8:11]
    cut = engine.complete(["Hello doctor"], max_tokens=40, temperature=1.0, seed=7, stop=[stop, "\x00never"])[
        0
    ]
    assert cut == free[: free.find(stop)]
    assert stop not in cut


def test_seeds_make_sampling_repeatable(engine):
    a = engine.complete(PROMPTS, max_tokens=16, temperature=1.0, seed=1)
    assert a == engine.complete(PROMPTS, max_tokens=16, temperature=1.0, seed=1)
    assert a != engine.complete(PROMPTS, max_tokens=16, temperature=1.0, seed=2)
    g = engine.generate([CONV], max_tokens=16, temperature=0.0, seed=1)
    assert g == engine.generate([CONV], max_tokens=16, temperature=0.0, seed=99)  # greedy ignores the seed


def test_stream_pieces_add_up_to_the_reply(engine):
    pieces = list(engine.stream(CONV2, max_tokens=24, temperature=1.0, seed=3))
    assert len(pieces) > 1
    assert "".join(pieces).strip() == engine.generate([CONV2], max_tokens=24, temperature=1.0, seed=3)[0]
    full = "".join(engine.stream(CONV2, max_tokens=24, temperature=1.0, seed=3))
    stop = full.strip()[4:6]
    stopped = "".join(engine.stream(CONV2, max_tokens=24, temperature=1.0, seed=3, stop=[stop]))
    assert stopped == full[: full.find(stop)]
    it = engine.stream(CONV2, max_tokens=24, temperature=1.0, seed=3)
    next(it)
    it.close()  # a consumer that leaves early releases the engine
    assert engine.generate([CONV], max_tokens=2)


def test_quantized_engines(tiny_model_path, tmp_path, engine):
    from deploy.quantize import save_quantized

    q = Engine(tiny_model_path, quant="int8", self_draft_layers=1)
    assert q.quant == "int8"
    assert len(q.generate([CONV, CONV2], max_tokens=8)) == 2
    saved = save_quantized(tiny_model_path, tmp_path / "int4", "int4")
    e4 = Engine(saved)
    assert e4.quant == "int4-g128" and e4.generate([CONV], max_tokens=6)
    with pytest.raises(ValueError, match="already quantized"):
        Engine(saved, quant="int8")


def test_clear_errors(tiny_model_path, tmp_path, engine):
    from deploy.tiny import save_tiny_engine_model

    with pytest.raises(FileNotFoundError, match="does not exist"):
        Engine(tmp_path / "missing")
    with pytest.raises(ValueError, match="unknown quantization scheme 'int3'"):
        Engine(tiny_model_path, quant="int3")
    with pytest.raises(ValueError, match="CPU int8/int4 kernels"):
        Engine(tiny_model_path, quant="int8", device="cuda")
    with pytest.raises(ValueError, match="gamma"):
        Engine(tiny_model_path, self_draft_layers=1, gamma=0)
    with pytest.raises(ValueError, match="either draft=PATH or self_draft_layers"):
        Engine(tiny_model_path, draft=tiny_model_path, self_draft_layers=1)
    with pytest.raises(ValueError, match="self_draft_layers must be an int in"):
        Engine(tiny_model_path, self_draft_layers=2)
    other = save_tiny_engine_model(tmp_path / "other-tokenizer")
    with pytest.raises(ValueError, match="different tokenizer"):
        Engine(tiny_model_path, draft=other)
    same_tok_other_vocab = tmp_path / "vocab"
    shutil.copytree(tiny_model_path, same_tok_other_vocab)
    from transformers import AutoConfig, LlamaForCausalLM

    cfg = AutoConfig.from_pretrained(same_tok_other_vocab)
    cfg.vocab_size += 8
    LlamaForCausalLM(cfg).save_pretrained(same_tok_other_vocab)
    with pytest.raises(ValueError, match="vocab_size"):
        Engine(tiny_model_path, draft=same_tok_other_vocab)
    with pytest.raises(ValueError, match="max_tokens"):
        engine.generate([CONV], max_tokens=0)
    with pytest.raises(TypeError, match="batch"):
        engine.generate("hello")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="list of strings"):
        engine.complete("hello", max_tokens=3, temperature=0.0, seed=None)  # type: ignore[arg-type]


def test_tiny_engine_model_helper(tmp_path):
    from deploy.tiny import save_tiny_engine_model

    path = save_tiny_engine_model(tmp_path / "tiny")
    eng = Engine(path)
    tok = eng.tokenizer
    # end-of-turn tokens stop a reply: <|end|> and the role markers of the chat template
    assert {tok.convert_tokens_to_ids(t) for t in ("<|end|>", "<|user|>", "<|assistant|>")} <= set(
        eng.stop_ids
    )
    assert len(eng.generate([CONV], max_tokens=5)) == 1
