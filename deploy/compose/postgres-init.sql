-- Runs once, when the postgres container initialises an empty data volume
-- (/docker-entrypoint-initdb.d). One database per PostgreSQL-owning service, as natively
-- (xtask/src/layout.rs DATABASES).
CREATE DATABASE users;
CREATE DATABASE orders;
CREATE DATABASE notifications;
-- The workflow engine's own database (Operaton creates its tables on start).
CREATE DATABASE workflow;
