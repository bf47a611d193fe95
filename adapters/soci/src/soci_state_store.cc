#include "sagaflow/adapters/soci/soci_state_store.h"

#include <algorithm>
#include <exception>
#include <future>
#include <limits>
#include <span>
#include <string>
#include <tuple>
#include <utility>

#include "database.h"
#include "group_committer.h"
#include "queries.h"
#include "rows.h"
#include "schema.h"

namespace sagaflow::adapters {

using engine::DefinitionRecord;
using engine::InstanceRecord;
using engine::InstanceSummary;
using sql::Backend;
using sql::Connection;

struct SociStateStore::Impl {
  Impl(sql::DatabaseConfig config, std::unique_ptr<Connection> writer)
      : config(config), pool(config, config.options.pool_size) {
    // SQLite has one writer at a time: one committer. PostgreSQL runs the batches of several
    // in parallel, each on its own connection.
    const std::size_t n = config.backend == sql::Backend::kSqlite
                              ? 1
                              : std::max<std::size_t>(1, config.options.committers);
    committers.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      committers.push_back(std::make_unique<sql::GroupCommitter>(
          config, i == 0 ? std::move(writer) : nullptr));
    }
  }

  // Every create and write of an instance goes to the same committer, so that they apply in
  // the order they were submitted.
  sql::GroupCommitter& CommitterFor(const InstanceId& id) {
    if (committers.size() == 1) return *committers.front();
    return *committers[std::hash<std::string>{}(id.str()) % committers.size()];
  }

  // Queues `request` for the committer. A call from a committer's own thread (a callback that
  // writes, maybe waiting for the outcome) is applied there at once (its connection is free
  // between batches): queued to another committer, it could wait for that one while that one
  // waits for this one; queued to its own, a wait would never end. The instance has no other
  // write in flight, so its order is kept.
  void Submit(sql::WriteRequest request) {
    for (const auto& committer : committers) {
      if (committer.get() == sql::GroupCommitter::Current()) {
        committer->Submit(std::move(request), true);
        return;
      }
    }
    CommitterFor(request.item.id).Submit(std::move(request), false);
  }

  // Runs `op` on a pooled connection, turning exceptions into Statuses named after `what`.
  // With `retry`, an operation that failed because its connection was lost (an idle pooled
  // connection the server closed, e.g. after a restart) runs once more on a new connection;
  // only for operations that may safely run twice.
  template <typename T, typename Op>
  Result<T> Run(const std::string& what, bool retry, Op&& op) {
    for (int attempt = 0;; ++attempt) {
      Result<sql::ConnectionPool::Handle> handle = pool.Acquire();
      if (!handle.ok()) {
        const Status& s = handle.status();
        return Status(
            s.code() == StatusCode::kInvalidArgument ? StatusCode::kUnavailable : s.code(),
            what + ": " + s.message());
      }
      Connection& conn = **handle;
      try {
        return op(conn);
      } catch (const std::exception& e) {
        Status status = sql::ErrorStatus(e, config.display + ": " + what, &conn);
        conn.RollbackQuietly();
        if (!retry || attempt > 0 || conn.Healthy()) return status;
      }
    }
  }

  const sql::DatabaseConfig config;
  sql::ConnectionPool pool;
  std::vector<std::unique_ptr<sql::GroupCommitter>> committers;
};

namespace {

long long ClampToInt64(std::size_t n) {
  return static_cast<long long>(
      std::min<std::size_t>(n, static_cast<std::size_t>(std::numeric_limits<long long>::max())));
}

}  // namespace

SociStateStore::SociStateStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

SociStateStore::~SociStateStore() { Stop(); }

void SociStateStore::Stop() noexcept {
  for (auto& committer : impl_->committers) committer->Stop();
}

GroupCommitStats SociStateStore::stats() const {
  GroupCommitStats total;
  for (const auto& committer : impl_->committers) {
    const GroupCommitStats s = committer->stats();
    total.batches += s.batches;
    total.commits += s.commits;
    total.items_written += s.items_written;
    total.items_refused += s.items_refused;
    total.items_failed += s.items_failed;
    total.largest_batch = std::max(total.largest_batch, s.largest_batch);
  }
  return total;
}

const std::string& SociStateStore::display_url() const { return impl_->config.display; }

Status SociStateStore::SaveDefinition(const DefinitionRecord& def) {
  Result<bool> saved =
      impl_->Run<bool>("saving definition of flow '" + def.name + "'", true, [&](Connection& conn) {
        const long long created_at = sql::ToNanos(def.created_at);
        conn.session() << "INSERT INTO flow_definitions (name, hash, version, content, created_at) "
                          "VALUES (:name, :hash, :version, :content, :created_at) "
                          "ON CONFLICT DO NOTHING",
            soci::use(def.name), soci::use(def.hash), soci::use(def.version),
            soci::use(def.content), soci::use(created_at);
        return true;
      });
  return saved.status();
}

Result<DefinitionRecord> SociStateStore::LoadDefinition(const std::string& name,
                                                        const std::string& hash) {
  return impl_->Run<DefinitionRecord>(
      "loading definition of flow '" + name + "'", true,
      [&](Connection& conn) -> Result<DefinitionRecord> {
        DefinitionRecord def;
        long long created_at = 0;
        conn.session() << "SELECT version, content, created_at FROM flow_definitions "
                          "WHERE name = :name AND hash = :hash",
            soci::use(name), soci::use(hash), soci::into(def.version), soci::into(def.content),
            soci::into(created_at);
        if (!conn.session().got_data()) {
          return NotFound("no definition of flow '" + name + "' with hash " + hash);
        }
        def.name = name;
        def.hash = hash;
        def.created_at = sql::FromNanos(created_at);
        return def;
      });
}

void SociStateStore::Create(const InstanceRecord& record,
                            std::span<const engine::DispatchRecord> dispatches, CreateDone done) {
  sql::WriteRequest request;
  request.item = sql::EncodeCreate(record, dispatches);
  request.create_done = std::move(done);
  impl_->Submit(std::move(request));
}

void SociStateStore::Apply(engine::WriteBatch& batch, WriteDone done) {
  sql::WriteRequest request;
  request.item = sql::EncodeBatch(batch);
  request.write_done = std::move(done);
  impl_->Submit(std::move(request));
}

Result<InstanceRecord> SociStateStore::LoadInstance(const InstanceId& id) {
  return impl_->Run<InstanceRecord>("loading instance " + id.str(), true,
                                    [&](Connection& conn) -> Result<InstanceRecord> {
                                      conn.BeginRead();
                                      Result<InstanceRecord> record = sql::ReadInstance(conn, id);
                                      conn.Commit();
                                      return record;
                                    });
}

Result<std::vector<Result<InstanceRecord>>> SociStateStore::LoadInstances(
    const std::vector<InstanceId>& ids) {
  // Keys per pair of queries: few statements for a large claim, each well under the backends'
  // limits on bound parameters, and one read transaction per chunk.
  constexpr std::size_t kChunk = 256;
  std::vector<Result<InstanceRecord>> out;
  out.reserve(ids.size());
  for (std::size_t begin = 0; begin < ids.size(); begin += kChunk) {
    const std::span<const InstanceId> chunk(ids.data() + begin,
                                            std::min(kChunk, ids.size() - begin));
    auto loaded = impl_->Run<std::vector<Result<InstanceRecord>>>(
        "loading " + std::to_string(chunk.size()) + " instances", true,
        [&](Connection& conn) -> Result<std::vector<Result<InstanceRecord>>> {
          conn.BeginRead();
          std::vector<Result<InstanceRecord>> records = sql::ReadInstances(conn, chunk);
          conn.Commit();
          return records;
        });
    if (!loaded.ok()) return loaded.status();
    for (Result<InstanceRecord>& r : *loaded) out.push_back(std::move(r));
  }
  return out;
}

Result<std::vector<InstanceSummary>> SociStateStore::ListInstances(
    const engine::InstanceFilter& filter) {
  if (filter.limit == 0) return std::vector<InstanceSummary>{};
  return impl_->Run<std::vector<InstanceSummary>>(
      "listing instances", true, [&](Connection& conn) -> Result<std::vector<InstanceSummary>> {
        // Only fixed SQL fragments vary; the values are bound.
        std::string sql =
            "SELECT id, flow_name, flow_version, business_key, status, compensation_status, "
            "started_at, ended_at, owner, lease_until, unfinished FROM instances";
        const std::string status =
            filter.status ? std::string(engine::RunStatusCode(*filter.status)) : "";
        const long long limit = ClampToInt64(filter.limit);
        sql::InstanceColumns c;
        soci::statement st(conn.session());
        st.exchange(soci::into(c.id));
        st.exchange(soci::into(c.flow_name));
        st.exchange(soci::into(c.flow_version));
        st.exchange(soci::into(c.business_key));
        st.exchange(soci::into(c.status));
        st.exchange(soci::into(c.compensation_status, c.compensation_status_ind));
        st.exchange(soci::into(c.started_at));
        st.exchange(soci::into(c.ended_at, c.ended_at_ind));
        st.exchange(soci::into(c.owner));
        st.exchange(soci::into(c.lease_until));
        st.exchange(soci::into(c.unfinished));
        const char* glue = " WHERE ";
        if (filter.status) {
          sql += glue + std::string("status = :status");
          st.exchange(soci::use(status));
          glue = " AND ";
        }
        if (!filter.flow_name.empty()) {
          sql += glue + std::string("flow_name = :flow_name");
          st.exchange(soci::use(filter.flow_name));
        }
        sql += " ORDER BY started_at DESC, id DESC LIMIT :limit";
        st.exchange(soci::use(limit));
        st.alloc();
        st.prepare(sql);
        st.define_and_bind();
        st.execute();
        std::vector<InstanceSummary> out;
        while (st.fetch()) {
          InstanceSummary s;
          s.id = InstanceId(c.id);
          s.flow_name = c.flow_name;
          s.flow_version = c.flow_version;
          s.business_key = c.business_key;
          std::optional<engine::RunStatus> parsed = engine::ParseRunStatus(c.status);
          if (!parsed) {
            return Internal("instance " + c.id + ": stored status is corrupt: '" + c.status +
                            "' is not a status code");
          }
          s.status = *parsed;
          if (c.compensation_status_ind == soci::i_ok) {
            s.compensation_status = engine::ParseRunStatus(c.compensation_status);
            if (!s.compensation_status) {
              return Internal("instance " + c.id + ": stored compensation_status is corrupt: '" +
                              c.compensation_status + "' is not a status code");
            }
          }
          s.started_at = sql::FromNanos(c.started_at);
          if (c.ended_at_ind == soci::i_ok) s.ended_at = sql::FromNanos(c.ended_at);
          s.owner = c.owner;
          s.lease_until = sql::FromNanos(c.lease_until);
          s.finished = c.unfinished == 0;
          out.push_back(std::move(s));
        }
        return out;
      });
}

Result<std::vector<InstanceId>> SociStateStore::ClaimDue(const std::string& owner,
                                                             TimePoint now, TimePoint lease_until,
                                                             std::size_t limit) {
  if (limit == 0) return std::vector<InstanceId>{};
  // Not retried: a claim whose answer was lost may have been applied.
  return impl_->Run<std::vector<InstanceId>>(
      "claiming expired leases for '" + owner + "'", false,
      [&](Connection& conn) -> Result<std::vector<InstanceId>> {
        const long long now_ns = sql::ToNanos(now);
        const long long until_ns = sql::ToNanos(lease_until);
        const long long max = ClampToInt64(limit);
        std::vector<std::pair<long long, std::string>> claimed;  // (old lease, id)
        std::string id;
        long long old_lease = 0;
        if (conn.backend() == Backend::kPostgres) {
          // One statement: rows another claimer has locked are skipped, not waited for, and
          // rows it claimed meanwhile no longer match (their lease is live again).
          soci::statement st =
              (conn.session().prepare
                   << "UPDATE instances SET owner = :owner, lease_until = :lease_until "
                      "FROM (SELECT id AS claimed_id, lease_until AS old_lease FROM instances "
                      "WHERE unfinished = 1 AND lease_until <= :now "
                      "ORDER BY lease_until, id LIMIT :limit FOR UPDATE SKIP LOCKED) AS expired "
                      "WHERE instances.id = expired.claimed_id "
                      "RETURNING instances.id, expired.old_lease",
               soci::use(owner), soci::use(until_ns), soci::use(now_ns), soci::use(max),
               soci::into(id), soci::into(old_lease));
          st.execute();
          while (st.fetch()) claimed.emplace_back(old_lease, id);
        } else {
          // The write transaction holds SQLite's write lock from its start: no other claimer
          // runs between the SELECT and the UPDATE, which takes the same rows (one statement
          // for the lot, not one per row).
          conn.BeginWrite();
          {
            soci::statement st =
                (conn.session().prepare << "SELECT id, lease_until FROM instances "
                                           "WHERE unfinished = 1 AND lease_until <= :now "
                                           "ORDER BY lease_until, id LIMIT :limit",
                 soci::use(now_ns), soci::use(max), soci::into(id), soci::into(old_lease));
            st.execute();
            while (st.fetch()) claimed.emplace_back(old_lease, id);
          }
          if (!claimed.empty()) {
            conn.session()
                << "UPDATE instances SET owner = :owner, lease_until = :lease_until "
                   "WHERE id IN (SELECT id FROM instances "
                   "WHERE unfinished = 1 AND lease_until <= :now "
                   "ORDER BY lease_until, id LIMIT :limit)",
                soci::use(owner), soci::use(until_ns), soci::use(now_ns), soci::use(max);
          }
          conn.Commit();
        }
        std::sort(claimed.begin(), claimed.end());
        std::vector<InstanceId> out;
        out.reserve(claimed.size());
        for (auto& [lease, claimed_id] : claimed) out.emplace_back(std::move(claimed_id));
        return out;
      });
}

Result<InstanceRecord> SociStateStore::ClaimInstance(const InstanceId& id, const std::string& owner,
                                                     TimePoint now, TimePoint lease_until) {
  return Claim(id, owner, now, lease_until, /*idle_only=*/false);
}

Result<InstanceRecord> SociStateStore::ClaimIdle(const InstanceId& id, const std::string& owner,
                                                 TimePoint now, TimePoint lease_until) {
  return Claim(id, owner, now, lease_until, /*idle_only=*/true);
}

Result<InstanceRecord> SociStateStore::Claim(const InstanceId& id, const std::string& owner,
                                             TimePoint now, TimePoint lease_until,
                                             bool idle_only) {
  return impl_->Run<InstanceRecord>(
      "claiming instance " + id.str() + " for '" + owner + "'", true,
      [&](Connection& conn) -> Result<InstanceRecord> {
        const std::string key = id.str();
        const long long now_ns = sql::ToNanos(now);
        const long long until_ns = sql::ToNanos(lease_until);
        // An idle claim matches no owner name ('' is the parked one, matched apart).
        const std::string same_owner = idle_only ? std::string() : owner;
        conn.BeginWrite();
        soci::statement claim =
            (conn.session().prepare
                 << "UPDATE instances SET owner = :owner, lease_until = :lease_until "
                    "WHERE id = :id AND (owner = :same_owner OR owner = '' OR lease_until <= :now)",
             soci::use(owner), soci::use(until_ns), soci::use(key), soci::use(same_owner),
             soci::use(now_ns));
        claim.execute(true);
        if (claim.get_affected_rows() == 0) {
          std::string holder;
          long long held_until = 0;
          conn.session() << "SELECT owner, lease_until FROM instances WHERE id = :id",
              soci::use(key), soci::into(holder), soci::into(held_until);
          const bool found = conn.session().got_data();
          conn.RollbackQuietly();
          if (!found) return NotFound("no instance " + key);
          return FailedPrecondition("instance " + key + " is leased by '" + holder + "' until " +
                                    FormatTime(sql::FromNanos(held_until)));
        }
        Result<InstanceRecord> record = sql::ReadInstance(conn, id);
        if (!record.ok()) {
          conn.RollbackQuietly();
          return record.status();
        }
        conn.Commit();
        return record;
      });
}

Result<std::size_t> SociStateStore::RenewLeases(const std::string& owner, TimePoint now,
                                                TimePoint renew_before, TimePoint lease_until) {
  return impl_->Run<std::size_t>(
      "renewing the leases of '" + owner + "'", true, [&](Connection& conn) -> Result<std::size_t> {
        const long long now_ns = sql::ToNanos(now);
        const long long before_ns = sql::ToNanos(renew_before);
        const long long until_ns = sql::ToNanos(lease_until);
        // On PostgreSQL the rows are locked in the subquery, skipping those a write of this
        // engine holds at that moment: waiting for them while that write waits for a row this
        // statement locked would be a deadlock. A skipped row is renewed a sixth of a lease
        // later; its owner is writing it, so it is alive.
        const char* sql =
            conn.backend() == sql::Backend::kPostgres
                ? "UPDATE instances SET lease_until = :lease_until WHERE id IN (SELECT id FROM "
                  "instances WHERE owner = :owner AND unfinished = 1 AND lease_until > :now "
                  "AND lease_until <= :before FOR UPDATE SKIP LOCKED)"
                : "UPDATE instances SET lease_until = :lease_until "
                  "WHERE owner = :owner AND unfinished = 1 AND lease_until > :now "
                  "AND lease_until <= :before";
        soci::statement st = (conn.session().prepare << sql, soci::use(until_ns),
                              soci::use(owner), soci::use(now_ns), soci::use(before_ns));
        st.execute(true);
        return static_cast<std::size_t>(std::max<long long>(0, st.get_affected_rows()));
      });
}

Result<engine::UnfinishedSummary> SociStateStore::Unfinished(const std::string& owner,
                                                             TimePoint now) {
  return impl_->Run<engine::UnfinishedSummary>(
      "counting unfinished instances", true,
      [&](Connection& conn) -> Result<engine::UnfinishedSummary> {
        const long long now_ns = sql::ToNanos(now);
        long long unfinished = 0;
        long long elsewhere = 0;
        long long next_expiry = 0;
        soci::indicator next_expiry_ind = soci::i_null;
        conn.BeginRead();
        conn.session() << "SELECT COUNT(*) FROM instances WHERE unfinished = 1",
            soci::into(unfinished);
        conn.session() << "SELECT COUNT(*), MIN(lease_until) FROM instances "
                          "WHERE unfinished = 1 AND owner <> :owner AND owner <> '' "
                          "AND lease_until > :now",
            soci::use(owner), soci::use(now_ns), soci::into(elsewhere),
            soci::into(next_expiry, next_expiry_ind);
        // Parked: no owner, not due yet. An instance that only an event wakes has the largest
        // time as its wake time; it has no next wake.
        const long long never = sql::ToNanos(TimePoint::max());
        long long parked = 0;
        long long next_wake = 0;
        soci::indicator next_wake_ind = soci::i_null;
        conn.session() << "SELECT COUNT(*), MIN(CASE WHEN lease_until < :never THEN lease_until "
                          "END) FROM instances WHERE unfinished = 1 AND owner = '' "
                          "AND lease_until > :now",
            soci::use(never), soci::use(now_ns), soci::into(parked),
            soci::into(next_wake, next_wake_ind);
        conn.Commit();
        engine::UnfinishedSummary out;
        out.parked = static_cast<std::size_t>(parked);
        if (parked > 0 && next_wake_ind == soci::i_ok) out.next_wake = sql::FromNanos(next_wake);
        out.unfinished = static_cast<std::size_t>(unfinished);
        out.leased_elsewhere = static_cast<std::size_t>(elsewhere);
        if (elsewhere > 0 && next_expiry_ind == soci::i_ok) {
          out.next_expiry = sql::FromNanos(next_expiry);
        }
        return out;
      });
}

namespace {
void IntoDispatch(soci::statement& st, sql::DispatchColumns& c) {
  st.exchange(soci::into(c.instance_id));
  st.exchange(soci::into(c.seq));
  st.exchange(soci::into(c.attempt));
  st.exchange(soci::into(c.state));
  st.exchange(soci::into(c.task));
  st.exchange(soci::into(c.idempotency_key));
  st.exchange(soci::into(c.input));
  st.exchange(soci::into(c.deadline_at, c.deadline_at_ind));
  st.exchange(soci::into(c.due_at));
}
}  // namespace

Result<engine::ClaimedDispatches> SociStateStore::ClaimDispatches(TimePoint now,
                                                                 TimePoint next_due,
                                                                 std::size_t limit) {
  using Rows = engine::ClaimedDispatches;
  if (limit == 0) return Rows{};
  // Not retried: a claim whose answer was lost may have been applied (its rows come due again
  // at next_due).
  return impl_->Run<Rows>("claiming due dispatches", false, [&](Connection& conn) -> Result<Rows> {
    const long long now_ns = sql::ToNanos(now);
    const long long next_ns = sql::ToNanos(next_due);
    const long long max = ClampToInt64(limit);
    std::vector<std::pair<long long, engine::DispatchRecord>> rows;  // (old due_at, row)
    Rows out;
    sql::DispatchColumns c;
    long long old_due = 0;
    std::vector<std::tuple<std::string, int, int>> keys;  // SQLite's, to update
    auto take = [&] {
      keys.emplace_back(c.instance_id, c.seq, c.attempt);
      engine::DispatchRecord d;
      Status decoded = c.ToRecord(d);
      if (!decoded.ok()) {
        out.corrupt.emplace_back(engine::DispatchKey{InstanceId(c.instance_id), c.seq, c.attempt},
                                 std::move(decoded));
        return;
      }
      d.due_at = next_due;
      rows.emplace_back(old_due, std::move(d));
    };
    if (conn.backend() == Backend::kPostgres) {
      soci::statement st(conn.session());
      st.exchange(soci::use(next_ns));
      st.exchange(soci::use(now_ns));
      st.exchange(soci::use(max));
      IntoDispatch(st, c);
      st.exchange(soci::into(old_due));
      st.alloc();
      st.prepare(
          "UPDATE dispatches SET due_at = :next FROM (SELECT instance_id AS k_id, seq AS k_seq, "
          "attempt AS k_attempt, due_at AS old_due FROM dispatches WHERE due_at <= :now "
          "ORDER BY due_at LIMIT :limit FOR UPDATE SKIP LOCKED) AS due "
          "WHERE dispatches.instance_id = due.k_id AND dispatches.seq = due.k_seq AND "
          "dispatches.attempt = due.k_attempt RETURNING dispatches.instance_id, "
          "dispatches.seq, dispatches.attempt, dispatches.state, dispatches.task, "
          "dispatches.idempotency_key, dispatches.input, dispatches.deadline_at, "
          "dispatches.due_at, due.old_due");
      st.define_and_bind();
      st.execute();
      while (st.fetch()) take();
    } else {
      // The write transaction holds SQLite's write lock from its start: no other claimer runs
      // between the SELECT and the UPDATE.
      conn.BeginWrite();
      {
        soci::statement st(conn.session());
        st.exchange(soci::use(now_ns));
        st.exchange(soci::use(max));
        IntoDispatch(st, c);
        st.exchange(soci::into(old_due));
        st.alloc();
        st.prepare(std::string("SELECT ") + sql::kDispatchColumns +
                   ", due_at FROM dispatches WHERE due_at <= :now ORDER BY due_at LIMIT :limit");
        st.define_and_bind();
        st.execute();
        while (st.fetch()) take();
      }
      std::string key_id;
      int key_seq = 0;
      int key_attempt = 0;
      soci::statement update =
          (conn.session().prepare << "UPDATE dispatches SET due_at = :next WHERE instance_id = "
                                     ":id AND seq = :seq AND attempt = :attempt",
           soci::use(next_ns), soci::use(key_id), soci::use(key_seq), soci::use(key_attempt));
      for (const auto& [id, seq, attempt] : keys) {
        key_id = id;
        key_seq = seq;
        key_attempt = attempt;
        update.execute(true);
      }
      conn.Commit();
    }
    std::stable_sort(rows.begin(), rows.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (auto& [due, d] : rows) out.rows.push_back(std::move(d));
    return out;
  });
}

Status SociStateStore::RemoveDispatches(std::span<const engine::DispatchKey> keys) {
  if (keys.empty()) return Status::Ok();
  return impl_
      ->Run<bool>("removing " + std::to_string(keys.size()) + " dispatches handed over", true,
                  [&](Connection& conn) -> Result<bool> {
                    std::string id;
                    int seq = 0;
                    int attempt = 0;
                    conn.BeginWrite();
                    soci::statement st =
                        (conn.session().prepare
                             << "DELETE FROM dispatches WHERE instance_id = :id AND seq = :seq "
                                "AND attempt = :attempt",
                         soci::use(id), soci::use(seq), soci::use(attempt));
                    for (const engine::DispatchKey& key : keys) {
                      id = key.instance.str();
                      seq = key.execution;
                      attempt = key.attempt;
                      st.execute(true);
                    }
                    conn.Commit();
                    return true;
                  })
      .status();
}

Result<std::vector<engine::DispatchRecord>> SociStateStore::ListDispatches(
    const InstanceId& instance) {
  using Rows = std::vector<engine::DispatchRecord>;
  return impl_->Run<Rows>(
      "listing the dispatches of instance " + instance.str(), true,
      [&](Connection& conn) -> Result<Rows> {
        const std::string id = instance.str();
        sql::DispatchColumns c;
        soci::statement st(conn.session());
        st.exchange(soci::use(id));
        IntoDispatch(st, c);
        st.alloc();
        st.prepare(std::string("SELECT ") + sql::kDispatchColumns +
                   " FROM dispatches WHERE instance_id = :id ORDER BY seq, attempt");
        st.define_and_bind();
        st.execute();
        Rows out;
        while (st.fetch()) {
          engine::DispatchRecord d;
          SAGAFLOW_RETURN_IF_ERROR(c.ToRecord(d));
          out.push_back(std::move(d));
        }
        return out;
      });
}

Result<std::unique_ptr<SociStateStore>> OpenSociStore(const std::string& url,
                                                      const SociStoreOptions& options) {
  SAGAFLOW_ASSIGN_OR_RETURN(sql::DatabaseConfig config, sql::ParseDatabaseUrl(url, options));
  SAGAFLOW_ASSIGN_OR_RETURN(std::unique_ptr<Connection> writer, Connection::Open(config));
  SAGAFLOW_RETURN_IF_ERROR(sql::ApplyMigrations(*writer, config).status());
  return std::make_unique<SociStateStore>(
      std::make_unique<SociStateStore::Impl>(std::move(config), std::move(writer)));
}

Result<std::vector<int>> MigrateDatabase(const std::string& url, const SociStoreOptions& options) {
  SAGAFLOW_ASSIGN_OR_RETURN(sql::DatabaseConfig config, sql::ParseDatabaseUrl(url, options));
  SAGAFLOW_ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn, Connection::Open(config));
  return sql::ApplyMigrations(*conn, config);
}

int LatestSchemaVersion() { return sql::Migrations().back().version; }

}  // namespace sagaflow::adapters
