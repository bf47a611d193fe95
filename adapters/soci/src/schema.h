#pragma once

// The store's tables, as versioned migrations. Internal to adapters/soci.

#include <vector>

#include "database.h"
#include "sagaflow/common/status.h"

namespace sagaflow::adapters::sql {

struct Migration {
  int version;
  const char* description;
  std::vector<const char*> statements;  // one SQL statement each, portable to both backends
  std::vector<const char*> postgres_statements = {};  // then these, on PostgreSQL only
  std::vector<const char*> sqlite_statements = {};    // or these, on SQLite only
};

// Every migration this binary knows, oldest first; versions are 1, 2, ...
const std::vector<Migration>& Migrations();

// Applies the migrations `conn`'s database lacks, each in its own transaction with its row in
// schema_migrations, and returns the versions applied now. Concurrent migrators are serialized
// (SQLite: the write lock; PostgreSQL: a transaction-scoped advisory lock per schema), so each
// migration is applied once. kFailedPrecondition when the database's schema is newer than this
// binary; otherwise the errors of DescribeError.
Result<std::vector<int>> ApplyMigrations(Connection& conn, const DatabaseConfig& config);

}  // namespace sagaflow::adapters::sql
