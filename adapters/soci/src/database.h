#pragma once

// Connections to the store's database: URL parsing, opening and configuring SOCI sessions,
// transactions, and turning SOCI's exceptions into Statuses. Internal to adapters/soci.

#include <soci/soci.h>

#include <condition_variable>
#include <cstddef>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "sagaflow/adapters/soci/soci_state_store.h"
#include "sagaflow/common/status.h"

namespace sagaflow::adapters::sql {

enum class Backend { kSqlite, kPostgres };

// Where the database is and how to connect to it, from a store URL.
struct DatabaseConfig {
  Backend backend = Backend::kSqlite;
  // What SOCI's backend receives: a SQLite file path, or libpq's connection URL (with
  // connect_timeout and application_name added when the URL had none).
  std::string connect_string;
  // The URL without its password, for messages.
  std::string display;
  // PostgreSQL: "host:port", for messages.
  std::string server;
  SociStoreOptions options;
};

// Parses `url` (see OpenSociStore). kInvalidArgument naming the accepted forms when it is
// neither a SQLite nor a PostgreSQL URL, or when the options are invalid (schema name).
Result<DatabaseConfig> ParseDatabaseUrl(const std::string& url, const SociStoreOptions& options);

// One open, configured connection. Not thread-safe: one user at a time.
class Connection {
 public:
  // Opens and configures a session: SQLite gets WAL, synchronous, foreign keys and the busy
  // timeout; PostgreSQL the schema's search_path. Errors: kInvalidArgument (missing directory,
  // not a database), kUnavailable (server unreachable, file locked).
  static Result<std::unique_ptr<Connection>> Open(const DatabaseConfig& config);

  ~Connection();

  soci::session& session() { return session_; }
  Backend backend() const { return backend_; }

  // False once the connection is known to be unusable (a PostgreSQL connection that was lost).
  bool Healthy();

  // Transactions. These throw soci::soci_error, as statements do.
  // A write transaction takes the SQLite write lock at once (BEGIN IMMEDIATE), waiting up to
  // the busy timeout, so that it never fails halfway because another writer holds the lock.
  void BeginWrite();
  // A read transaction sees one snapshot (SQLite: deferred; PostgreSQL: REPEATABLE READ READ
  // ONLY).
  void BeginRead();
  void Commit();
  // Rolls back the open transaction, if any; errors are ignored (the connection may be gone).
  void RollbackQuietly() noexcept;
  bool in_transaction() const { return in_transaction_; }

 private:
  Connection(Backend backend) : backend_(backend) {}
  void Execute(const char* sql);

  const Backend backend_;
  soci::session session_;
  bool in_transaction_ = false;
};

// Whether an error is worth retrying the items of a failed batch one by one: a statement the
// database refused while the connection stayed usable (as opposed to a lost connection, a
// full disk or a lock that would fail every item again).
struct ErrorInfo {
  Status status;
  bool item_specific = false;
};

// The Status for an exception thrown while doing `what` on `conn` (null when none):
// kUnavailable for lost connections, I/O errors, locks and resource limits (retry later),
// kInternal for anything else (a statement the database rejects, data it cannot convert).
ErrorInfo DescribeError(const std::exception& e, const std::string& what, Connection* conn);
Status ErrorStatus(const std::exception& e, const std::string& what, Connection* conn);

// Up to `size` connections shared by threads for reads and short writes. Connections open on
// first use; one found unhealthy when returned is closed and reopened by a later Acquire.
// Thread-safe.
class ConnectionPool {
 public:
  ConnectionPool(DatabaseConfig config, std::size_t size);

  // A connection for one operation; goes back to the pool when destroyed.
  class Handle {
   public:
    Handle(ConnectionPool* pool, std::unique_ptr<Connection> conn)
        : pool_(pool), conn_(std::move(conn)) {}
    Handle(Handle&& other) noexcept = default;
    Handle& operator=(Handle&&) = delete;
    ~Handle();
    Connection& operator*() { return *conn_; }
    Connection* operator->() { return conn_.get(); }
    Connection* get() { return conn_.get(); }

   private:
    ConnectionPool* pool_;
    std::unique_ptr<Connection> conn_;
  };

  // Blocks until a connection is free; opens one when fewer than `size` are open. Errors of
  // Connection::Open.
  Result<Handle> Acquire();

  const DatabaseConfig& config() const { return config_; }

 private:
  void Release(std::unique_ptr<Connection> conn);

  const DatabaseConfig config_;
  const std::size_t size_;
  std::mutex mu_;
  std::condition_variable freed_;
  std::vector<std::unique_ptr<Connection>> idle_;
  std::size_t open_ = 0;  // idle or handed out
};

}  // namespace sagaflow::adapters::sql
