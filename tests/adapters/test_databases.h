#pragma once

// Databases for the SOCI store's tests: a SQLite file in a fresh directory, or a fresh schema
// in the PostgreSQL server named by SAGAFLOW_TEST_POSTGRES_URL. Each is removed (directory, or
// DROP SCHEMA ... CASCADE) when the TestDatabase is destroyed. Tests reach the database behind
// the store's back with the C client libraries (sqlite3, libpq), never with SOCI.

#include <libpq-fe.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "sagaflow/adapters/soci/soci_state_store.h"

namespace sagaflow::testing {

// The PostgreSQL server of the tests, from SAGAFLOW_TEST_POSTGRES_URL ("" when unset).
inline std::string TestPostgresUrl() {
  const char* url = std::getenv("SAGAFLOW_TEST_POSTGRES_URL");
  return url ? url : "";
}

// With SAGAFLOW_REQUIRE_POSTGRES=1 (CI), a missing server fails the PostgreSQL tests.
inline bool PostgresRequired() {
  const char* v = std::getenv("SAGAFLOW_REQUIRE_POSTGRES");
  return v != nullptr && std::string(v) == "1";
}

inline const char* kPostgresMissing =
    "SAGAFLOW_TEST_POSTGRES_URL is not set. To run the PostgreSQL tests, start the test server "
    "and export its URL: export SAGAFLOW_TEST_POSTGRES_URL=$(scripts/postgres.sh start)";

// In a fixture's SetUp: fails (SAGAFLOW_REQUIRE_POSTGRES=1) or skips when there is no server.
#define SAGAFLOW_REQUIRE_TEST_POSTGRES()                                               \
  do {                                                                                 \
    if (::sagaflow::testing::TestPostgresUrl().empty()) {                              \
      if (::sagaflow::testing::PostgresRequired()) {                                   \
        FAIL() << "a PostgreSQL server is required (SAGAFLOW_REQUIRE_POSTGRES=1) but " \
               << ::sagaflow::testing::kPostgresMissing;                               \
      }                                                                                \
      GTEST_SKIP() << ::sagaflow::testing::kPostgresMissing;                           \
    }                                                                                  \
  } while (0)

class TestDatabase {
 public:
  enum class Kind { kSqlite, kPostgres };

  // For kPostgres, TestPostgresUrl() must not be empty.
  explicit TestDatabase(Kind kind) : kind_(kind) {
    static std::atomic<int> counter{0};
    const std::string unique =
        std::to_string(::getpid()) + "_" + std::to_string(counter.fetch_add(1));
    if (kind == Kind::kSqlite) {
      dir_ = std::filesystem::temp_directory_path() / ("sagaflow_soci_test_" + unique);
      std::filesystem::remove_all(dir_);
      std::filesystem::create_directories(dir_);
      path_ = (dir_ / "store.db").string();
      url_ = "sqlite:" + path_;
    } else {
      schema_ = "sagaflow_test_" + unique;
      const std::string base = TestPostgresUrl();
      // The application name lets a test find (and kill) the store's connections.
      url_ =
          base + (base.find('?') == std::string::npos ? "?" : "&") + "application_name=" + schema_;
    }
  }

  ~TestDatabase() {
    if (kind_ == Kind::kSqlite) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    } else {
      Execute("DROP SCHEMA IF EXISTS \"" + schema_ + "\" CASCADE");
    }
  }

  TestDatabase(const TestDatabase&) = delete;
  TestDatabase& operator=(const TestDatabase&) = delete;

  Kind kind() const { return kind_; }
  const std::string& url() const { return url_; }
  const std::string& path() const { return path_; }      // SQLite
  const std::string& schema() const { return schema_; }  // PostgreSQL
  // The application_name of the store's PostgreSQL connections.
  const std::string& application_name() const { return schema_; }

  // `base` with this database's schema.
  adapters::SociStoreOptions Options(adapters::SociStoreOptions base = {}) const {
    base.schema = schema_;
    return base;
  }

  Result<std::unique_ptr<adapters::SociStateStore>> Open(
      adapters::SociStoreOptions base = {}) const {
    return adapters::OpenSociStore(url_, Options(std::move(base)));
  }

  // Runs `sql` directly on the database (in the test schema) and returns the first column of
  // the first row, "" when there is none; "ERROR: ..." when the database refused it.
  std::string Execute(const std::string& sql) const {
    if (kind_ == Kind::kSqlite) {
      sqlite3* db = nullptr;
      if (sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
        std::string error = "ERROR: " + std::string(sqlite3_errmsg(db));
        sqlite3_close(db);
        return error;
      }
      sqlite3_busy_timeout(db, 5000);
      std::string out;
      char* error = nullptr;
      auto first = [](void* arg, int n, char** values, char**) {
        auto* result = static_cast<std::string*>(arg);
        if (result->empty() && n > 0 && values[0] != nullptr) *result = values[0];
        return 0;
      };
      if (sqlite3_exec(db, sql.c_str(), first, &out, &error) != SQLITE_OK) {
        out = "ERROR: " + std::string(error ? error : "?");
        sqlite3_free(error);
      }
      sqlite3_close(db);
      return out;
    }
    PGconn* conn = PQconnectdb(TestPostgresUrl().c_str());
    std::string out;
    if (PQstatus(conn) != CONNECTION_OK) {
      out = "ERROR: " + std::string(PQerrorMessage(conn));
      PQfinish(conn);
      return out;
    }
    PQsetNoticeProcessor(
        conn, [](void*, const char*) {}, nullptr);
    const std::string path = "SET search_path TO \"" + schema_ + "\"";
    PQclear(PQexec(conn, path.c_str()));
    PGresult* result = PQexec(conn, sql.c_str());
    const ExecStatusType status = PQresultStatus(result);
    if (status == PGRES_TUPLES_OK) {
      if (PQntuples(result) > 0 && PQnfields(result) > 0) out = PQgetvalue(result, 0, 0);
    } else if (status != PGRES_COMMAND_OK) {
      out = "ERROR: " + std::string(PQresultErrorMessage(result));
    }
    PQclear(result);
    PQfinish(conn);
    return out;
  }

 private:
  Kind kind_;
  std::filesystem::path dir_;
  std::string path_;
  std::string schema_;
  std::string url_;
};

}  // namespace sagaflow::testing
