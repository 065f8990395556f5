"""The built-in multi-domain corpus (offline, byte-level, cached, split by document).

>>> from engine.data import prepare_corpus, Corpus
>>> info = prepare_corpus()              # six domains into ~/.cache/mixplan/corpus
>>> corpus = info.load()                 # memory-mapped uint8 arrays per domain

See :mod:`engine.data.corpus` for the format and :mod:`engine.data.sources` for the domains.
"""

from engine.data.corpus import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_VAL_BYTES,
    DEFAULT_VAL_FRACTION,
    Corpus,
    CorpusInfo,
    CorpusSpec,
    DomainInfo,
    DomainSource,
    build_local_corpus,
    default_cache_dir,
    prepare_corpus,
    read_manifest,
    split_documents,
)
from engine.data.sources import BUILTIN_SOURCES, DEFAULT_DOMAINS, OFFLINE_DOMAINS

__all__ = [
    "BUILTIN_SOURCES",
    "DEFAULT_DOMAINS",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_VAL_BYTES",
    "DEFAULT_VAL_FRACTION",
    "OFFLINE_DOMAINS",
    "Corpus",
    "CorpusInfo",
    "CorpusSpec",
    "DomainInfo",
    "DomainSource",
    "build_local_corpus",
    "default_cache_dir",
    "prepare_corpus",
    "read_manifest",
    "split_documents",
]
