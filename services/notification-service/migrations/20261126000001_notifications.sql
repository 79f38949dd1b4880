-- Contacts: the replica of users' contact fields, built from user.events. `as_of` is the time
-- of the event the row reflects, so an older snapshot replayed late never overwrites a newer one.
CREATE TABLE contacts (
    user_id UUID PRIMARY KEY,
    email   TEXT NOT NULL,
    name    TEXT NOT NULL,
    phone   TEXT,
    locale  TEXT NOT NULL,
    as_of   TIMESTAMPTZ NOT NULL
);

-- Per-channel choices. No row means the defaults: e-mail on, SMS off (SMS needs an opt-in).
CREATE TABLE preferences (
    user_id       UUID PRIMARY KEY,
    email_enabled BOOLEAN NOT NULL,
    sms_enabled   BOOLEAN NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Events already turned into messages (see messaging::mark_processed).
CREATE TABLE processed_events (
    consumer     TEXT NOT NULL,
    event_id     UUID NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- Events about users whose contact has not arrived yet (user.events is another topic, read by
-- another consumer, possibly later). Turned into messages when the contact arrives.
CREATE TABLE waiting_events (
    event_id      UUID PRIMARY KEY,
    user_id       UUID NOT NULL,
    topic         TEXT NOT NULL,
    event         JSONB NOT NULL,
    trace_headers JSONB NOT NULL DEFAULT '{}',
    received_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX waiting_events_user ON waiting_events (user_id, received_at, event_id);

-- The durable queue and the history: one row per (event, channel), rendered when the event was
-- handled. The unique key is what makes a message exist at most once; the status is what makes
-- it go out at most once (see README, "Exactly once").
CREATE TABLE messages (
    id                 BIGSERIAL PRIMARY KEY,
    event_id           UUID NOT NULL,
    channel            TEXT NOT NULL CHECK (channel IN ('email', 'sms')),
    user_id            UUID NOT NULL,
    template           TEXT NOT NULL,
    locale             TEXT NOT NULL,
    recipient          TEXT NOT NULL,
    subject            TEXT,
    body_text          TEXT NOT NULL,
    body_html          TEXT,
    status             TEXT NOT NULL DEFAULT 'pending'
                       CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    attempts           INT NOT NULL DEFAULT 0,
    next_attempt_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_until        TIMESTAMPTZ,
    last_error         TEXT,
    provider_reference TEXT,
    topic              TEXT NOT NULL,
    event              JSONB NOT NULL,
    trace_headers      JSONB NOT NULL DEFAULT '{}',
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at            TIMESTAMPTZ,
    CONSTRAINT messages_event_channel UNIQUE (event_id, channel)
);
-- The senders' work list, in queue order.
CREATE INDEX messages_active ON messages (id) WHERE status IN ('pending', 'sending');
-- "No earlier unfinished message of the same user on this channel".
CREATE INDEX messages_active_user ON messages (user_id, channel, id)
    WHERE status IN ('pending', 'sending');
-- The caller's history, newest first.
CREATE INDEX messages_history ON messages (user_id, id DESC);
