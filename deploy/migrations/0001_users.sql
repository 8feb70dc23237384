-- Users of the exchange: one API key and its HMAC secret each (issued by POST /admin/v1/users).
CREATE TABLE users (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    api_key TEXT NOT NULL UNIQUE,
    secret_key TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
