"""One settings object for the whole course, read from environment variables (and an optional `.env` file).

Every knob a learner, instructor or CI job may turn lives here with its documented default; nothing else in the
course reads `os.environ` directly.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from course.ranking import Mode

REPO_ROOT = Path(__file__).resolve().parent.parent

#: Every vector in the course is stored with this many dimensions (the `vector(1536)` column).
EMBEDDING_DIMENSIONS = 1536

Provider = Literal["local", "minilm", "openai", "gemini", "hashing"]
Target = Literal["labs", "solutions"]


def postgres_url(value: str | None) -> str | None:
    """Every URL form the course meets, as one: `postgres://` (Heroku, Render, Supabase) is `postgresql://`; any
    `+driver` suffix is dropped (each helper in course.database adds the one its driver needs); blank is unset."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.split("+")[0] not in ("postgres", "postgresql"):
        raise ValueError(f"DATABASE_URL must start with postgresql:// (got {scheme or value[:20]!r}).")
    return f"postgresql://{rest}"


class Settings(BaseSettings):
    """Course configuration. Field names map to upper-case environment variables (e.g. DATABASE_URL)."""

    model_config = SettingsConfigDict(env_file=REPO_ROOT / ".env", extra="ignore", populate_by_name=True)

    # --- database -------------------------------------------------------------------------------------------------
    database_url: str | None = Field(
        None, description="Use this PostgreSQL server (with pgvector >= 0.8) instead of the embedded one."
    )

    @field_validator("database_url")
    @classmethod
    def _one_url_form(cls, value: str | None) -> str | None:
        return postgres_url(value)

    database_read_urls: str | None = Field(
        None,
        description="Comma-separated URLs of hot standbys the search service reads from (writes go to the primary); "
        "unset: the running standbys of `python -m course cluster` (embedded server), else none (the primary "
        "serves reads).",
    )
    read_max_lag: float = Field(
        10.0, gt=0, description="Seconds a standby may be behind the primary and still take reads."
    )
    read_after_wait: float = Field(
        0.5,
        ge=0,
        description="Seconds a search carrying X-Read-After-LSN waits for a standby to replay that write before "
        "reading from the primary instead.",
    )

    @field_validator("database_read_urls")
    @classmethod
    def _read_urls(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return ",".join(str(postgres_url(url)) for url in value.split(",") if url.strip())

    course_pgdata: Path = Field(REPO_ROOT / ".pgdata", description="Data directory of the embedded server.")
    course_database: str = Field(
        "course", pattern=r"^[a-z0-9_]+$", description="Database the embedded server creates for the course."
    )
    maintenance_work_mem: str = Field(
        "512MB",
        pattern=r"^\d+(kB|MB|GB)$",
        description="maintenance_work_mem of the embedded server and of every course connection; 64MB (the "
        "default) cannot build IVFFlat lists=100.",
    )
    random_page_cost: float = Field(
        1.1,
        description="random_page_cost of the embedded server (and of every course connection, which is what "
        "reaches a DATABASE_URL server). The default 4 models spinning disks; at 4 the planner answers ORDER BY "
        "embedding <=> q LIMIT 10 on the corpus with a seq scan + sort (cost 1,599 vs 597); at 1.1 (SSD) it uses "
        "the HNSW index.",
    )
    shared_buffers: str = Field(
        "256MB",
        pattern=r"^\d+(kB|MB|GB)$",
        description="shared_buffers of the embedded server: the course table, its TOAST and its HNSW index "
        "(~154MB) fit, where the wheel's 128MB does not.",
    )

    # --- embeddings -----------------------------------------------------------------------------------------------
    embedding_provider: Provider = Field(
        "minilm",
        description="minilm (all-MiniLM-L6-v2, the default) | local (WordLlama: 100x faster, weaker on questions) | "
        "openai | gemini | hashing",
    )
    embedding_timeout: float = Field(30.0, description="Seconds per HTTP request to an embedding API.")
    embedding_max_retries: int = Field(4, ge=0, le=10, description="Retries on 429/5xx/timeouts before giving up.")
    embedding_batch_size: int = Field(256, ge=1, le=2048, description="Texts per embedding API request.")
    embedding_native_dimensions: int | None = Field(
        None,
        ge=1,
        le=EMBEDDING_DIMENSIONS,
        description="How many values the configured OpenAI-compatible model answers with, when the course does not "
        "know the model (course.embeddings.KNOWN_WIDTHS); answers of another width are refused (502).",
    )
    openai_api_key: SecretStr | None = None
    openai_base_url: str = "https://api.openai.com/v1"
    openai_embedding_model: str = "text-embedding-ada-002"
    gemini_api_key: SecretStr | None = None
    gemini_base_url: str = "https://generativelanguage.googleapis.com/v1beta"
    gemini_embedding_model: str = "gemini-embedding-001"

    # --- the search service (Objective 6) -------------------------------------------------------------------------
    search_cache_size: int = Field(1024, ge=0, description="Result cache entries (0 disables the cache).")
    search_cache_max_bytes: int = Field(
        64 * 2**20,
        ge=2**20,
        description="Result cache size bound in bytes "
        "(estimated from the cached texts and metadata), besides the entry count.",
    )
    search_cache_ttl: float = Field(
        300.0,
        gt=0,
        description="Seconds a cached result lives (bounds staleness from writes made outside the service).",
    )
    embedding_cache_size: int = Field(4096, ge=0, description="Query-text -> embedding cache entries.")
    embedding_cache_ttl: float = Field(3600.0, gt=0, description="Seconds a cached query embedding lives.")
    search_mode: Mode | None = Field(
        None,
        description="POST /search's default ranking; unset: the best measured for the embedding model (rrf for "
        "the local model, vector for models not evaluated here).",
    )
    search_max_query_chars: int = Field(2000, ge=1, description="Longest query text accepted (422 beyond).")
    search_db_timeout: float = Field(10.0, gt=0, description="Seconds to wait for a pooled connection or a query.")
    search_deadline: float = Field(
        5.0,
        gt=0,
        le=120,
        description="Seconds a search may take in all (embedding with "
        "its retries, and the database); past it the answer is 503 with Retry-After.",
    )
    document_deadline: float = Field(30.0, gt=0, le=600, description="The same bound for POST /documents.")
    embedding_breaker_failures: int = Field(
        5,
        ge=1,
        description="Consecutive provider failures that open the "
        "circuit breaker (requests then fail at once with 503).",
    )
    embedding_breaker_reset: float = Field(
        30.0, gt=0, description="Seconds the breaker stays open before one request is let through as a probe."
    )
    search_api_key: SecretStr | None = Field(
        None,
        description="Key POST /documents requires (Authorization: Bearer "
        "or X-API-Key); unset: writes are open (the course default).",
    )
    search_max_body_bytes: int = Field(
        262_144,
        ge=1024,
        description="Largest request body accepted, counted as it arrives, chunked bodies included (413 beyond).",
    )
    search_body_timeout: float = Field(
        10.0, gt=0, le=300, description="Seconds the service waits for each piece of a request body (408 beyond)."
    )

    # --- course ---------------------------------------------------------------------------------------------------
    course_target: Target = Field("labs", description="Which implementation notebooks and checks import.")
    course_data_dir: Path = Field(REPO_ROOT / "data", description="Cache for the corpus (never committed).")
    course_corpus: Literal["auto", "postgres-docs", "python-docs"] = Field(
        "auto", description="auto = the PostgreSQL manual where apt is available, else CPython's documentation."
    )
    course_strict_checks: bool = Field(
        False, description="check(N) in a notebook raises when a check fails (CI validates notebooks this way)."
    )
    course_objectives: str | None = Field(
        None,
        pattern=r"^\s*\d+(\s*,\s*\d+)*\s*$",
        description="The objectives `make check`'s overview covers, e.g. "
        "1,2,3 (those assigned so far); default: every objective with checks.",
    )
    course_notebook_checks: bool = Field(
        True,
        description="check(N) in a notebook grades. make test's notebook runs turn it off: the checks use "
        "databases of their own, not the corpus, and tests/test_grade.py grades the reference in full.",
    )
    course_tmp_prefix: str = Field(
        "",
        pattern=r"^[a-z0-9_]*$",
        description="Prefix for throw-away database names (the grader sets one per "
        "submission, so it can drop whatever a killed run left behind).",
    )
    course_corpus_limit: int | None = Field(None, ge=1, description="Load only the first N chunks (quick runs).")
    course_comparisons: Path | None = Field(
        None,
        description="A file (relative: from the repository root) that every timed comparison a notebook prints is "
        "appended to; make test's two notebook runs write one each and check that no comparison flips.",
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once. Tests that change the environment call `get_settings.cache_clear()`."""
    return Settings()
