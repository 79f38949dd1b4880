-- The account's role, from user.registered.v1 (user.updated carries none and keeps it): admins
-- receive the workflow's approval reminders. NULL for contacts recorded before roles were
-- kept; replaying user.events fills it in.
ALTER TABLE contacts ADD COLUMN role TEXT;
CREATE INDEX contacts_role ON contacts (role) WHERE role IS NOT NULL;
