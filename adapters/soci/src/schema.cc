#include "schema.h"

#include <string>

#include "sagaflow/common/clock.h"

namespace sagaflow::adapters::sql {

namespace {

// The first key of the advisory lock migrators take (the second is the schema's hash).
constexpr int kMigrationLockKey = 0x5A6AF10;

// Times are int64 nanoseconds since the Unix epoch; JSON values are text; flags are 0/1
// INTEGERs; statuses are Seata's codes (RU SU FA UN SK).
const std::vector<Migration> kMigrations = {
    {1,
     "flow definitions, instances and state executions",
     {
         R"(CREATE TABLE flow_definitions (
              name TEXT NOT NULL,
              hash TEXT NOT NULL,
              version TEXT NOT NULL,
              content TEXT NOT NULL,
              created_at BIGINT NOT NULL,
              PRIMARY KEY (name, hash)))",
         R"(CREATE TABLE instances (
              id TEXT NOT NULL PRIMARY KEY,
              flow_name TEXT NOT NULL,
              flow_version TEXT NOT NULL,
              flow_hash TEXT NOT NULL,
              business_key TEXT NOT NULL,
              status TEXT NOT NULL,
              compensation_status TEXT,
              input TEXT NOT NULL,
              context TEXT NOT NULL,
              error TEXT,
              error_code TEXT NOT NULL,
              error_message TEXT NOT NULL,
              owner TEXT NOT NULL,
              lease_until BIGINT NOT NULL,
              started_at BIGINT NOT NULL,
              updated_at BIGINT NOT NULL,
              ended_at BIGINT,
              cursor TEXT NOT NULL,
              unfinished INTEGER NOT NULL))",
         // One instance per (flow, business key); "" means none.
         "CREATE UNIQUE INDEX instances_business_key ON instances (flow_name, business_key) "
         "WHERE business_key <> ''",
         // ClaimDue, RenewLeases, Unfinished.
         "CREATE INDEX instances_claim ON instances (unfinished, lease_until)",
         "CREATE INDEX instances_owner ON instances (owner, unfinished)",
         // ListInstances: newest first, optionally by flow or status.
         "CREATE INDEX instances_started ON instances (started_at, id)",
         "CREATE INDEX instances_flow_started ON instances (flow_name, started_at, id)",
         "CREATE INDEX instances_status_started ON instances (status, started_at, id)",
         R"(CREATE TABLE state_executions (
              instance_id TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
              seq INTEGER NOT NULL,
              state TEXT NOT NULL,
              state_index INTEGER NOT NULL,
              kind TEXT NOT NULL,
              compensates INTEGER NOT NULL,
              retried_for INTEGER NOT NULL,
              epoch INTEGER NOT NULL,
              attempts INTEGER NOT NULL,
              status TEXT NOT NULL,
              compensation_status TEXT,
              superseded INTEGER NOT NULL,
              for_update INTEGER NOT NULL,
              retry_counts TEXT NOT NULL,
              retry_at BIGINT,
              idempotency_key TEXT NOT NULL,
              input TEXT NOT NULL,
              output TEXT NOT NULL,
              error TEXT,
              started_at BIGINT NOT NULL,
              ended_at BIGINT,
              PRIMARY KEY (instance_id, seq)))",
     }},
    {2,
     "lease indexes hold running instances only; room for in-place updates on PostgreSQL",
     {
         // An instance enters the lease indexes when it starts and leaves them when it ends,
         // instead of being moved within them: the indexes stay as small as what is running.
         "DROP INDEX instances_claim",
         "DROP INDEX instances_owner",
         "CREATE INDEX instances_claim ON instances (lease_until, id) WHERE unfinished = 1",
         "CREATE INDEX instances_owner ON instances (owner, lease_until) WHERE unfinished = 1",
     },
     {
         // Every step updates its instance's row and an execution's row without changing an
         // indexed column: with free room on the page, PostgreSQL updates them in place (HOT)
         // instead of adding an entry to every index. Applies to pages written from now on.
         "ALTER TABLE instances SET (fillfactor = 50)",
         "ALTER TABLE state_executions SET (fillfactor = 50)",
     }},
    {3,
     "state executions without a foreign key to their instance",
     {},
     {
         // The committer writes an instance's executions only in the transaction that writes its
         // row, after the lease check found the row; nothing deletes instances. The key's check
         // (a lookup of the instance for every execution inserted) guarded nothing the writer
         // does not, at a tenth of the database's work per step.
         "ALTER TABLE state_executions DROP CONSTRAINT IF EXISTS "
         "state_executions_instance_id_fkey",
     },
     {
         // SQLite cannot drop a constraint: the table is rebuilt without it, rows kept.
         R"(CREATE TABLE state_executions_v3 (
              instance_id TEXT NOT NULL,
              seq INTEGER NOT NULL,
              state TEXT NOT NULL,
              state_index INTEGER NOT NULL,
              kind TEXT NOT NULL,
              compensates INTEGER NOT NULL,
              retried_for INTEGER NOT NULL,
              epoch INTEGER NOT NULL,
              attempts INTEGER NOT NULL,
              status TEXT NOT NULL,
              compensation_status TEXT,
              superseded INTEGER NOT NULL,
              for_update INTEGER NOT NULL,
              retry_counts TEXT NOT NULL,
              retry_at BIGINT,
              idempotency_key TEXT NOT NULL,
              input TEXT NOT NULL,
              output TEXT NOT NULL,
              error TEXT,
              started_at BIGINT NOT NULL,
              ended_at BIGINT,
              PRIMARY KEY (instance_id, seq)))",
         "INSERT INTO state_executions_v3 (instance_id, seq, state, state_index, kind, "
         "compensates, retried_for, epoch, attempts, status, compensation_status, superseded, "
         "for_update, retry_counts, retry_at, idempotency_key, input, output, error, started_at, "
         "ended_at) SELECT instance_id, seq, state, state_index, kind, compensates, retried_for, "
         "epoch, attempts, status, compensation_status, superseded, for_update, retry_counts, "
         "retry_at, idempotency_key, input, output, error, started_at, ended_at "
         "FROM state_executions",
         "DROP TABLE state_executions",
         "ALTER TABLE state_executions_v3 RENAME TO state_executions",
     }},
    {4,
     "the deadline of an attempt in flight (TimeoutSeconds)",
     {
         // Parked instances (owner '') keep their wake time in lease_until, so the claim index
         // serves timers and expired leases alike; an attempt's deadline is its own column.
         "ALTER TABLE state_executions ADD COLUMN deadline_at BIGINT",
     }},
    {5,
     "the outbox: async steps' attempts to hand to the dispatcher",
     {
         // No foreign key, for the reason migration 3 dropped the executions' one: rows are
         // written only in the transaction that writes their instance, after its lease check.
         R"(CREATE TABLE dispatches (
              instance_id TEXT NOT NULL,
              seq INTEGER NOT NULL,
              attempt INTEGER NOT NULL,
              state TEXT NOT NULL,
              task TEXT NOT NULL,
              idempotency_key TEXT NOT NULL,
              input TEXT NOT NULL,
              deadline_at BIGINT,
              due_at BIGINT NOT NULL,
              PRIMARY KEY (instance_id, seq, attempt)))",
         // ClaimDispatches: the due ones, earliest first.
         "CREATE INDEX dispatches_due ON dispatches (due_at)",
     }},
};

// Takes the migrators' lock for the current transaction (PostgreSQL; SQLite's write
// transaction is exclusive already).
void LockMigrations(Connection& conn, const DatabaseConfig& config) {
  if (conn.backend() != Backend::kPostgres) return;
  const int key = kMigrationLockKey;
  const std::string& schema = config.options.schema;
  conn.session() << "SELECT pg_advisory_xact_lock(:key, hashtext(:schema))", soci::use(key),
      soci::use(schema);
}

}  // namespace

const std::vector<Migration>& Migrations() { return kMigrations; }

Result<std::vector<int>> ApplyMigrations(Connection& conn, const DatabaseConfig& config) {
  const int latest = kMigrations.back().version;
  std::vector<int> applied;
  std::string step = "creating schema_migrations";
  try {
    conn.BeginWrite();
    LockMigrations(conn, config);
    if (conn.backend() == Backend::kPostgres && !config.options.schema.empty()) {
      // An identifier cannot be a bound parameter; the name was checked to be a plain one.
      conn.session() << ("CREATE SCHEMA IF NOT EXISTS \"" + config.options.schema + "\"");
    }
    conn.session() << "CREATE TABLE IF NOT EXISTS schema_migrations ("
                      "version INTEGER NOT NULL PRIMARY KEY, "
                      "description TEXT NOT NULL, "
                      "applied_at BIGINT NOT NULL)";
    conn.Commit();

    for (const Migration& migration : kMigrations) {
      step = "applying migration " + std::to_string(migration.version) + " (" +
             migration.description + ")";
      conn.BeginWrite();
      LockMigrations(conn, config);
      int current = 0;
      soci::indicator current_ind = soci::i_null;
      conn.session() << "SELECT MAX(version) FROM schema_migrations",
          soci::into(current, current_ind);
      if (current_ind != soci::i_ok) current = 0;
      if (current > latest) {
        conn.RollbackQuietly();
        return FailedPrecondition(config.display + ": the database schema is at version " +
                                  std::to_string(current) + ", newer than this sagaflow knows (" +
                                  std::to_string(latest) +
                                  "); run a sagaflow at least as new as the one that migrated it");
      }
      if (current >= migration.version) {
        conn.Commit();
        continue;
      }
      for (const char* statement : migration.statements) conn.session() << statement;
      if (conn.backend() == Backend::kPostgres) {
        for (const char* statement : migration.postgres_statements) conn.session() << statement;
      } else {
        for (const char* statement : migration.sqlite_statements) conn.session() << statement;
      }
      const int version = migration.version;
      const std::string description = migration.description;
      const long long applied_at = SystemClock().Now().time_since_epoch().count();
      conn.session() << "INSERT INTO schema_migrations (version, description, applied_at) "
                        "VALUES (:version, :description, :applied_at)",
          soci::use(version), soci::use(description), soci::use(applied_at);
      conn.Commit();
      applied.push_back(version);
    }
  } catch (const std::exception& e) {
    Status status = ErrorStatus(e, config.display + ": " + step, &conn);
    conn.RollbackQuietly();
    return status;
  }
  return applied;
}

}  // namespace sagaflow::adapters::sql
