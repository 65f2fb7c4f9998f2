"""The documentation can be followed as written: README.md and docs/ (checks in tests/docs_check.py)."""

from __future__ import annotations

import pytest

from tests import docs_check as dc

PAGES = dc.documentation_files()


def test_the_pages_exist_and_the_readme_is_a_landing_page():
    assert (dc.REPO / "docs" / "index.md").is_file() and len(PAGES) >= 10
    assert len((dc.REPO / "README.md").read_text().splitlines()) <= 250


def test_every_relative_link_and_anchor_resolves():
    assert dc.broken_links(PAGES) == []


def test_a_broken_link_or_anchor_is_reported(tmp_path):
    """The check itself: a missing file, a missing anchor and a path outside the root are each named."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b.md").write_text("# Page B\n\n## Run folder, and resume\n\n<a id=\"custom\"></a>\n")
    page = tmp_path / "README.md"
    page.write_text(
        "# A\n\n## Section one\n\n"
        "[ok](docs/b.md#run-folder-and-resume) [ok](docs/b.md#custom) [ok](#section-one) [web](https://x.org/#y)\n"
        "[missing file](docs/c.md) [missing anchor](docs/b.md#resume) ![missing image](docs/p.png)\n"
        "[outside](../elsewhere.md) `[in code](docs/none.md)`\n\n"
        "```bash\n[in a block](docs/none.md)\n```\n")
    (tmp_path.parent / "elsewhere.md").write_text("x")
    problems = dc.broken_links([page, tmp_path / "docs" / "b.md"], root=tmp_path)
    assert problems == ["README.md: docs/c.md (no such file)",
                        "README.md: docs/b.md#resume (no heading with this anchor in b.md)",
                        "README.md: docs/p.png (no such file)",
                        "README.md: ../elsewhere.md (outside the repository)"]


def test_slugs_follow_the_git_hosts_rules():
    text = ("# Multi-GPU and multi-node training\n## `train.py`: what a run produces\n## Tables I and II\n"
            "## Tables I and II\n```\n# not a heading\n```\n")
    assert dc.anchors(text) == {"multi-gpu-and-multi-node-training", "trainpy-what-a-run-produces",
                                "tables-i-and-ii", "tables-i-and-ii-1"}


def test_commands_are_found_in_blocks_and_spans_with_their_flags_and_overrides():
    text = ("Run `python evaluate.py --checkpoint RUN/best.pt [--split train|val|test]`.\n\n"
            "```bash\nOMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node=2 train.py \\\n"
            "    --config configs/sewa.yaml data.sewa.delay_arousal=4.0 run.dir=runs/x   # a comment --not-a-flag\n"
            "python3 -m venv .venv && . .venv/bin/activate && python -m data.prepare V --out R --keep-going\n```\n")
    found = [(c.entry, c.flags, c.overrides) for c in dc.parse_commands(text, "p.md")]
    assert found == [("train.py", ["--config"], ["data.sewa.delay_arousal", "run.dir"]),
                     ("data.prepare", ["--out", "--keep-going"], []),
                     ("evaluate.py", ["--checkpoint", "--split"], [])]


@pytest.fixture(scope="module")
def shown_commands():
    commands = [c for page in PAGES
                for c in dc.parse_commands(page.read_text(encoding="utf-8"), str(page.relative_to(dc.REPO)))]
    entries = {c.entry for c in commands if dc.entry_point_exists(c.entry)}
    return commands, dc.help_texts(sorted(entries))


def test_every_command_shown_names_an_entry_point_whose_help_accepts_its_flags(shown_commands):
    commands, helps = shown_commands
    assert len(commands) >= 30 and {"train.py", "evaluate.py", "predict.py"} <= {c.entry for c in commands}
    assert dc.command_problems(commands, helps, dc.config_keys()) == []


def test_a_wrong_flag_a_wrong_key_and_a_missing_module_are_reported(shown_commands):
    _, helps = shown_commands
    bad = dc.parse_commands("```\npython train.py --confg x train.max_step=3\npython -m data.prepar V\n"
                            "python evaluate.py --checkpoint C --split val\n```\n", "p.md")
    problems = dc.command_problems(bad, helps, dc.config_keys())
    assert problems == ["p.md: `python train.py --confg x train.max_step=3`: train.py has no option --confg",
                        "p.md: `python train.py --confg x train.max_step=3`: no configuration key train.max_step",
                        "p.md: `python -m data.prepar V`: no entry point data.prepar"]


# Spelled in pieces so that this file does not match itself.
OUTSIDE = {"a design-brief section": "DESIGN" + r"(\.md)?\s*§",
           "the design brief": r"\bDESIGN" + r"\.md\b",
           "the shared folder beside the checkout": r"\.\./" + "shared",
           "a paper's file": "papers" + r"/(\d{3}|<)",
           "an issue number": r"\b[Ii]ssue" + r"\s*#?\d+"}


def test_no_tracked_file_points_outside_the_repository():
    import re
    import subprocess

    listed = subprocess.run(["git", "ls-files"], cwd=dc.REPO, capture_output=True, text=True)
    files = listed.stdout.split() if listed.returncode == 0 else []
    if not files:
        pytest.skip("not a git checkout")
    hits = []
    for name in files:
        path = dc.REPO / name
        if path.suffix in {".png", ".jpg", ".pt"} or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        hits += [f"{name}: {what}" for what, pattern in OUTSIDE.items() if re.search(pattern, text)]
    assert hits == []
