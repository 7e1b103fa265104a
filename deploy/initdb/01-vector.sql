-- Runs once, when the compose database is first created.
CREATE EXTENSION IF NOT EXISTS vector;
