#include "database.h"

#include <libpq-fe.h>
#include <soci/postgresql/soci-postgresql.h>
#include <soci/sqlite3/soci-sqlite3.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

namespace sagaflow::adapters::sql {

namespace {

constexpr std::string_view kAcceptedForms =
    "expected sqlite:PATH, postgresql://user:password@host:port/database or postgres://...";

// A database error message on one line, without trailing blanks.
std::string OneLine(std::string message) {
  for (char& c : message) {
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  }
  std::string out;
  out.reserve(message.size());
  for (char c : message) {
    if (c == ' ' && !out.empty() && out.back() == ' ') continue;
    out.push_back(c);
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  constexpr std::size_t kMax = 600;
  if (out.size() > kMax) out = out.substr(0, kMax) + "...";
  return out;
}

bool IsIdentifier(const std::string& s) {
  if (s.empty() || s.size() > 63) return false;
  if (!(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

Result<DatabaseConfig> ParseSqliteUrl(const std::string& url, const SociStoreOptions& options) {
  std::string path = url.substr(std::string_view("sqlite:").size());
  // sqlite:///abs/file.db and sqlite://relative.db, as other tools write them.
  if (path.rfind("//", 0) == 0) path = path.substr(2);
  if (path.empty()) {
    return InvalidArgument("store URL '" + url + "' names no file; " + std::string(kAcceptedForms));
  }
  if (path == ":memory:" || path.rfind("file:", 0) == 0) {
    return InvalidArgument("store URL '" + url +
                           "': in-memory and URI databases are not supported (each connection "
                           "would see its own); use a file, or the in-memory store");
  }
  if (path.find('"') != std::string::npos) {
    return InvalidArgument("store URL '" + url + "': the file name must not contain '\"'");
  }
  DatabaseConfig config;
  config.backend = Backend::kSqlite;
  config.connect_string = path;
  config.display = "sqlite:" + path;
  config.options = options;
  return config;
}

Result<DatabaseConfig> ParsePostgresUrl(const std::string& url, const SociStoreOptions& options) {
  if (!options.schema.empty() && !IsIdentifier(options.schema)) {
    return InvalidArgument("schema '" + options.schema +
                           "' is not a plain identifier (letters, digits and '_', at most 63, "
                           "not starting with a digit)");
  }
  char* error = nullptr;
  PQconninfoOption* parsed = PQconninfoParse(url.c_str(), &error);
  if (parsed == nullptr) {
    std::string message = error ? OneLine(error) : "out of memory";
    if (error) PQfreemem(error);
    // Not echoing the URL: it may hold a password.
    return InvalidArgument("invalid PostgreSQL URL: " + message);
  }
  std::map<std::string, std::string> values;
  for (PQconninfoOption* o = parsed; o->keyword != nullptr; ++o) {
    if (o->val != nullptr) values[o->keyword] = o->val;
  }
  PQconninfoFree(parsed);

  const std::string host = values.count("host") ? values["host"] : "localhost";
  const std::string port = values.count("port") ? values["port"] : "5432";
  DatabaseConfig config;
  config.backend = Backend::kPostgres;
  config.options = options;
  config.server = host + ":" + port;
  config.display = "postgresql://" + (values.count("user") ? values["user"] + "@" : "") +
                   config.server + "/" + (values.count("dbname") ? values["dbname"] : "");
  config.connect_string = url;
  std::string extra;
  if (!values.count("connect_timeout")) {
    extra += "connect_timeout=" +
             std::to_string(std::max<long long>(1, options.connect_timeout.count()));
  }
  if (!values.count("application_name")) {
    extra += std::string(extra.empty() ? "" : "&") + "application_name=sagaflow";
  }
  if (!extra.empty()) {
    config.connect_string += (url.find('?') == std::string::npos ? "?" : "&") + extra;
  }
  return config;
}

// libpq prints NOTICEs (e.g. "relation already exists, skipping") on stderr by default.
void IgnoreNotice(void*, const char*) {}

}  // namespace

Result<DatabaseConfig> ParseDatabaseUrl(const std::string& url, const SociStoreOptions& options) {
  if (url.rfind("sqlite:", 0) == 0) return ParseSqliteUrl(url, options);
  if (url.rfind("postgresql://", 0) == 0 || url.rfind("postgres://", 0) == 0) {
    return ParsePostgresUrl(url, options);
  }
  std::string shown = url.substr(0, url.find("://"));
  return InvalidArgument("unsupported store URL '" + shown +
                         (shown.size() < url.size() ? "://..." : "") +
                         "': " + std::string(kAcceptedForms));
}

Result<std::unique_ptr<Connection>> Connection::Open(const DatabaseConfig& config) {
  std::unique_ptr<Connection> conn(new Connection(config.backend));
  if (config.backend == Backend::kSqlite) {
    const std::filesystem::path path(config.connect_string);
    std::error_code ec;
    const std::filesystem::path dir = path.parent_path();
    if (!dir.empty() && !std::filesystem::is_directory(dir, ec)) {
      return InvalidArgument(config.display + ": directory " + dir.string() + " does not exist");
    }
    if (std::filesystem::is_directory(path, ec)) {
      return InvalidArgument(config.display + ": " + path.string() + " is a directory");
    }
    // Multi-thread mode: here a connection is only ever used by one thread at a time (the
    // committer owns the writer; pooled connections are handed out one at a time), so SQLite's
    // per-call mutexes of the default serialized mode are pure overhead on the write path. It
    // can be set only before SQLite initializes; when something in the process used SQLite
    // first, the call fails harmlessly and SQLite stays serialized.
    static std::once_flag multithread;
    std::call_once(multithread, [] {
      sqlite_api::sqlite3_config(SQLITE_CONFIG_MULTITHREAD);
      // Nor the allocator's statistics, which take a global mutex on every allocation.
      sqlite_api::sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    });
    try {
      conn->session_.open(soci::sqlite3, "db=\"" + config.connect_string + "\"");
    } catch (const std::exception& e) {
      return Unavailable(config.display + ": cannot open the database: " + OneLine(e.what()));
    }
    auto* backend = static_cast<soci::sqlite3_session_backend*>(conn->session_.get_backend());
    sqlite_api::sqlite3_busy_timeout(
        backend->conn_, static_cast<int>(std::clamp<long long>(config.options.busy_timeout.count(),
                                                               0, 24LL * 3600 * 1000)));
    const auto configure_deadline = std::chrono::steady_clock::now() + config.options.busy_timeout;
    while (true) {
      try {
        std::string mode;
        conn->session_ << "PRAGMA journal_mode = WAL", soci::into(mode);
        std::transform(mode.begin(), mode.end(), mode.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        if (mode != "wal") {
          return FailedPrecondition(config.display +
                                    ": the database cannot use WAL (journal mode " + mode + ")");
        }
        conn->Execute(config.options.durability == SociStoreOptions::Durability::kFull
                          ? "PRAGMA synchronous = FULL"
                          : "PRAGMA synchronous = NORMAL");
        conn->Execute("PRAGMA foreign_keys = ON");
        // A page cache large enough for the working set of the instances in flight (64 MiB, used
        // as needed), and reads through a memory map instead of copies into it.
        conn->Execute("PRAGMA cache_size = -65536");
        conn->Execute("PRAGMA mmap_size = 268435456");
        // Checkpoint the WAL every ~40 MiB instead of every 4 MiB: the pages of the instances in
        // flight change at every step, and a longer interval writes each of them back once for
        // many commits.
        conn->Execute("PRAGMA wal_autocheckpoint = 10000");
      } catch (const soci::sqlite3_soci_error& e) {
        if ((e.result() & 0xff) == SQLITE_BUSY &&
            std::chrono::steady_clock::now() < configure_deadline) {
          // Another connection is turning a fresh file to WAL, and SQLite does not wait for
          // that one (it would deadlock): try again until the busy timeout.
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
          continue;
        }
        if ((e.result() & 0xff) == SQLITE_NOTADB) {
          return InvalidArgument(config.display + ": " + path.string() +
                                 " is not a SQLite database (" + OneLine(e.get_error_message()) +
                                 ")");
        }
        return ErrorStatus(e, config.display + ": configuring the connection", conn.get());
      } catch (const std::exception& e) {
        return ErrorStatus(e, config.display + ": configuring the connection", conn.get());
      }
      break;
    }
    return conn;
  }

  try {
    conn->session_.open(soci::postgresql, config.connect_string);
  } catch (const std::exception& e) {
    std::string message = OneLine(e.what());
    // SOCI's prefix says nothing libpq's message does not.
    const std::string_view prefix = "Cannot establish connection to the database. ";
    if (message.rfind(prefix, 0) == 0) message = message.substr(prefix.size());
    return Unavailable("cannot connect to PostgreSQL at " + config.server + ": " + message);
  }
  auto* backend = static_cast<soci::postgresql_session_backend*>(conn->session_.get_backend());
  PQsetNoticeProcessor(backend->conn_, &IgnoreNotice, nullptr);
  if (!config.options.schema.empty()) {
    try {
      // The value is a list of identifiers; quoted, the name keeps its case.
      const std::string path = "\"" + config.options.schema + "\"";
      std::string set;
      conn->session_ << "SELECT set_config('search_path', :path, false)", soci::use(path),
          soci::into(set);
    } catch (const std::exception& e) {
      return ErrorStatus(e, config.display + ": setting search_path", conn.get());
    }
  }
  return conn;
}

Connection::~Connection() { RollbackQuietly(); }

bool Connection::Healthy() {
  if (backend_ != Backend::kPostgres) return true;
  auto* backend = static_cast<soci::postgresql_session_backend*>(session_.get_backend());
  return backend != nullptr && backend->conn_ != nullptr &&
         PQstatus(backend->conn_) == CONNECTION_OK;
}

void Connection::Execute(const char* sql) { session_ << sql; }

void Connection::BeginWrite() {
  Execute(backend_ == Backend::kSqlite ? "BEGIN IMMEDIATE" : "BEGIN");
  in_transaction_ = true;
}

void Connection::BeginRead() {
  Execute(backend_ == Backend::kSqlite ? "BEGIN"
                                       : "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
  in_transaction_ = true;
}

void Connection::Commit() {
  // Whatever happens, the transaction is over: a failed COMMIT rolls back (PostgreSQL) or is
  // rolled back by the caller.
  Execute("COMMIT");
  in_transaction_ = false;
}

void Connection::RollbackQuietly() noexcept {
  if (!in_transaction_) return;
  in_transaction_ = false;
  try {
    if (Healthy()) Execute("ROLLBACK");
  } catch (...) {
    // SQLite may have rolled back already (after an I/O error); a lost connection has no
    // transaction left.
  }
}

ErrorInfo DescribeError(const std::exception& e, const std::string& what, Connection* conn) {
  const bool healthy = conn == nullptr || conn->Healthy();
  auto make = [&](StatusCode code, const std::string& message, bool item_specific) {
    return ErrorInfo{Status(code, what + ": " + OneLine(message)), item_specific};
  };
  if (const auto* lite = dynamic_cast<const soci::sqlite3_soci_error*>(&e)) {
    switch (lite->result() & 0xff) {
      case SQLITE_BUSY:
      case SQLITE_LOCKED:
      case SQLITE_NOMEM:
      case SQLITE_READONLY:
      case SQLITE_IOERR:
      case SQLITE_FULL:
      case SQLITE_CANTOPEN:
      case SQLITE_PROTOCOL:
        return make(StatusCode::kUnavailable, lite->get_error_message(), false);
      case SQLITE_CORRUPT:
      case SQLITE_NOTADB:
        return make(StatusCode::kInternal, "the database is corrupt: " + lite->get_error_message(),
                    false);
      default:
        return make(StatusCode::kInternal, lite->get_error_message(), true);
    }
  }
  if (const auto* pg = dynamic_cast<const soci::postgresql_soci_error*>(&e)) {
    const std::string state = pg->sqlstate();
    const std::string cls = state.substr(0, 2);
    if (!healthy || cls == "08" || cls == "53" || cls == "57" || cls == "58" || state == "55P03") {
      return make(StatusCode::kUnavailable, pg->get_error_message(), false);
    }
    // Deadlocks and serialization failures: retryable, and alone an item usually succeeds.
    if (cls == "40") return make(StatusCode::kUnavailable, pg->get_error_message(), true);
    return make(StatusCode::kInternal, pg->get_error_message(), true);
  }
  if (const auto* soci_error = dynamic_cast<const soci::soci_error*>(&e)) {
    const auto category = soci_error->get_error_category();
    if (!healthy || category == soci::soci_error::connection_error ||
        category == soci::soci_error::system_error) {
      return make(StatusCode::kUnavailable, soci_error->get_error_message(), false);
    }
    return make(StatusCode::kInternal, soci_error->get_error_message(), true);
  }
  if (!healthy) return make(StatusCode::kUnavailable, e.what(), false);
  return make(StatusCode::kInternal, e.what(), true);
}

Status ErrorStatus(const std::exception& e, const std::string& what, Connection* conn) {
  return DescribeError(e, what, conn).status;
}

ConnectionPool::ConnectionPool(DatabaseConfig config, std::size_t size)
    : config_(std::move(config)), size_(std::max<std::size_t>(1, size)) {}

ConnectionPool::Handle::~Handle() {
  if (conn_) pool_->Release(std::move(conn_));
}

Result<ConnectionPool::Handle> ConnectionPool::Acquire() {
  {
    std::unique_lock lock(mu_);
    freed_.wait(lock, [this] { return !idle_.empty() || open_ < size_; });
    if (!idle_.empty()) {
      std::unique_ptr<Connection> conn = std::move(idle_.back());
      idle_.pop_back();
      return Handle(this, std::move(conn));
    }
    ++open_;
  }
  Result<std::unique_ptr<Connection>> opened = Connection::Open(config_);
  if (!opened.ok()) {
    std::lock_guard lock(mu_);
    --open_;
    freed_.notify_one();
    return opened.status();
  }
  return Handle(this, std::move(*opened));
}

void ConnectionPool::Release(std::unique_ptr<Connection> conn) {
  conn->RollbackQuietly();
  const bool healthy = conn->Healthy();
  if (!healthy) conn.reset();  // closed outside the lock
  std::lock_guard lock(mu_);
  if (healthy) {
    idle_.push_back(std::move(conn));
  } else {
    --open_;
  }
  freed_.notify_one();
}

}  // namespace sagaflow::adapters::sql
