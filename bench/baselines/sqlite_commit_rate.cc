// Raw SQLite single-row commit rate: the ceiling a durable state store on SQLite can reach when
// every persistence point is its own transaction. See bench/README.md.
//
// One table (id INTEGER PRIMARY KEY, payload TEXT of 200 bytes), WAL journal mode, one INSERT
// per transaction (autocommit) through a prepared statement, for --seconds S with
// synchronous=FULL, then with synchronous=NORMAL, each on a fresh database file in --dir. Prints
// one JSON object per mode and removes its files.
//
// Usage: sagaflow_sqlite_commit_rate [--dir DIR] [--seconds S]

#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>

namespace {

constexpr std::size_t kPayloadBytes = 200;

void RemoveDatabase(const std::filesystem::path& file) {
  std::error_code ec;
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
    std::filesystem::remove(file.string() + suffix, ec);
  }
}

// The database being measured, removed on failure too.
std::filesystem::path g_file;

[[noreturn]] void Fail(const std::string& what, sqlite3* db = nullptr) {
  std::fprintf(stderr, "sqlite_commit_rate: %s%s%s\n", what.c_str(), db != nullptr ? ": " : "",
               db != nullptr ? sqlite3_errmsg(db) : "");
  if (!g_file.empty()) RemoveDatabase(g_file);
  std::exit(1);
}

void Exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = std::string(sql) + ": " + (err != nullptr ? err : "?");
    sqlite3_free(err);
    Fail(msg);
  }
}

// Returns the first column of the first row of `sql` as text.
std::string QueryText(sqlite3* db, const char* sql) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) != SQLITE_OK) Fail(sql, db);
  std::string out;
  if (sqlite3_step(stmt) == SQLITE_ROW) {
    const unsigned char* text = sqlite3_column_text(stmt, 0);
    if (text != nullptr) out = reinterpret_cast<const char*>(text);
  }
  sqlite3_finalize(stmt);
  return out;
}

struct Result {
  long long commits = 0;
  double seconds = 0;
};

Result Measure(const std::filesystem::path& file, std::string_view mode, double seconds) {
  g_file = file;
  RemoveDatabase(file);
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
      SQLITE_OK) {
    Fail("cannot open " + file.string(), db);
  }
  if (QueryText(db, "PRAGMA journal_mode=WAL") != "wal") Fail("cannot switch to WAL mode", db);
  Exec(db, ("PRAGMA synchronous=" + std::string(mode)).c_str());
  Exec(db, "CREATE TABLE rows (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)");

  sqlite3_stmt* insert = nullptr;
  if (sqlite3_prepare_v2(db, "INSERT INTO rows (id, payload) VALUES (?1, ?2)", -1, &insert,
                         nullptr) != SQLITE_OK) {
    Fail("prepare INSERT", db);
  }
  std::string payload(kPayloadBytes, 'x');

  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(seconds));
  Result result;
  auto now = start;
  while (now < deadline) {
    ++result.commits;
    // A payload that differs per row, the way a serialized record does.
    const std::string id = std::to_string(result.commits);
    payload.replace(0, id.size(), id);
    sqlite3_bind_int64(insert, 1, result.commits);
    sqlite3_bind_text(insert, 2, payload.data(), static_cast<int>(payload.size()),
                      SQLITE_STATIC);
    if (sqlite3_step(insert) != SQLITE_DONE) Fail("INSERT", db);
    sqlite3_reset(insert);
    now = Clock::now();
  }
  result.seconds = std::chrono::duration<double>(now - start).count();

  if (std::stoll(QueryText(db, "SELECT count(*) FROM rows")) != result.commits) {
    Fail("row count does not match the commits");
  }
  sqlite3_finalize(insert);
  if (sqlite3_close(db) != SQLITE_OK) Fail("close", db);
  RemoveDatabase(file);
  return result;
}

void Usage() {
  std::fprintf(stderr,
               "usage: sagaflow_sqlite_commit_rate [--dir DIR] [--seconds S]\n"
               "  --dir DIR    where the database file goes (default: the current directory)\n"
               "  --seconds S  how long each mode runs (default 3)\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::filesystem::path dir = ".";
  double seconds = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      Usage();
      return 0;
    }
    if ((arg == "--dir" || arg == "--seconds") && i + 1 < argc) {
      const char* value = argv[++i];
      if (arg == "--dir") {
        dir = value;
      } else {
        char* end = nullptr;
        seconds = std::strtod(value, &end);
        if (end == value || *end != '\0' || !(seconds > 0)) {
          std::fprintf(stderr, "sqlite_commit_rate: --seconds wants a positive number\n");
          return 2;
        }
      }
      continue;
    }
    Usage();
    return 2;
  }
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    std::fprintf(stderr, "sqlite_commit_rate: %s is not a directory\n", dir.c_str());
    return 2;
  }
  const std::filesystem::path file =
      dir / ("sagaflow_sqlite_commit_rate." + std::to_string(getpid()) + ".db");

  for (const char* mode : {"FULL", "NORMAL"}) {
    const Result r = Measure(file, mode, seconds);
    std::printf("{\"mode\":\"%s\",\"commits\":%lld,\"seconds\":%.3f,\"commits_per_s\":%.1f}\n",
                mode, r.commits, r.seconds, static_cast<double>(r.commits) / r.seconds);
    std::fflush(stdout);
  }
  return 0;
}
