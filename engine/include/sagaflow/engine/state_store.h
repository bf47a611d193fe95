#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "sagaflow/common/status.h"
#include "sagaflow/engine/records.h"

namespace sagaflow::engine {

// A flow definition as stored: instances refer to it by (name, hash).
struct DefinitionRecord {
  std::string name;
  std::string version;
  std::string hash;
  std::string content;
  TimePoint created_at{};
};

// What changed in an instance since its last write.
//
// Every write stores the cursor, updated_at and compensation_status. A write with
// `header` also stores the rest of the header: status, error, error code and message,
// ended_at and lease_until (the engine sets it at the first write of a run or an
// operation and at the end of one; in between those fields do not change, and the lease is
// renewed by RenewLeases, so a step's write leaves the indexed columns alone). started_at is
// the instance's creation and is stored by the create alone, like its identity. Whether the
// instance is finished (its cursor's phase) may change only in a write with `header`: stores
// may index it with the header. The owner is never written here: it is checked.
//
// An execution's identity (state, kind, compensates, retried_for, epoch, idempotency key,
// for_update) and its input are fixed by the first write that lists it; later writes change
// only its progress (attempts, status, compensation status, superseded, retry counts and time,
// output, error, end time).
//
// The context is written whenever the step changed it (a task's Output, an operation's patch,
// the end of a run), so that the stored context is always the one the cursor continues
// from: an instance taken over after a crash resumes from what is stored, with nothing to
// re-evaluate (re-rendering Output could issue new `$Sequence` values).
//
// With context_changed, `context_keys` may name the only keys in which the context differs from
// the one written last (a task's Output set them; a key the Output could not render is
// missing from record.context and was missing before): a store may apply those instead of the
// whole context.
struct InstanceWrite {
  const InstanceRecord* record = nullptr;
  ExecutionIds executions;  // ids of executions created or changed
  bool context_changed = false;
  bool header = true;
  const ContextKeys* context_keys = nullptr;
  // Executions with an id below this one were stored by earlier writes, so that a store may
  // update their progress in place rather than insert-or-update them; -1 when unknown.
  int stored_executions = -1;
  // With `header`: the instance parks. After the owner check, the stored owner becomes "" (no
  // process holds it) and record.lease_until is its wake time: the time from which any
  // process's ClaimDue may take it (TimePoint::max() when only an event wakes it, which
  // ClaimInstance delivers).
  bool release_owner = false;
};

struct InstanceFilter {
  std::optional<RunStatus> status;
  std::string flow_name;  // "" for all
  std::size_t limit = 100;
};

struct InstanceSummary {
  InstanceId id;
  std::string flow_name;
  std::string flow_version;
  std::string business_key;
  RunStatus status = RunStatus::kRunning;
  std::optional<RunStatus> compensation_status;
  TimePoint started_at{};
  std::optional<TimePoint> ended_at;
  std::string owner;
  TimePoint lease_until{};
};

// What remains to recover: unfinished instances (cursor not finished) and their leases.
struct UnfinishedSummary {
  std::size_t unfinished = 0;
  // Unfinished instances whose lease, held by an owner other than the one asking, is still
  // live, and the earliest time one of those leases expires.
  std::size_t leased_elsewhere = 0;
  std::optional<TimePoint> next_expiry;
  // Parked instances (no owner) not due yet, and the earliest wake time among them (none when
  // every parked instance waits for an event rather than a time).
  std::size_t parked = 0;
  std::optional<TimePoint> next_wake;
};

// Where instances live. Every method is durable when it returns OK (as durable as the adapter
// promises), thread-safe, and turns the backend's exceptions into Statuses (kUnavailable when
// the backend refused or went away: the caller retries; nothing half-written is visible).
//
// Leases. Every instance records the engine process that runs it (`owner`) and until when
// (`lease_until`). WriteInstance refuses with kFailedPrecondition ("lease lost") when the
// stored owner differs from record.owner, so that a process whose instance was taken over
// cannot write over the new owner's progress; a write with `header` stores
// record.lease_until as given. An instance is *unfinished* while its cursor's phase is not
// kFinished.
//
// Durable timers. A parked instance (sleeping in a Wait or a retry's backoff, or waiting for
// an event) has no owner ("") and its lease_until is its wake time: leases and timers are one
// column, so that ClaimDue takes both the instances of a process that died and the timers that
// came due, with one claim that only one process wins.
class StateStore {
 public:
  using WriteDone = std::function<void(Status)>;
  using CreateDone = std::function<void(Result<InstanceId>)>;

  virtual ~StateStore() = default;

  // Stores a definition; storing the same (name, hash) again is OK and changes nothing.
  virtual Status SaveDefinition(const DefinitionRecord& def) = 0;
  virtual Result<DefinitionRecord> LoadDefinition(const std::string& name,
                                                  const std::string& hash) = 0;

  // Creates an instance. When `record.business_key` is not empty and an instance of the same
  // flow already uses it: returns that instance's id if its input equals record.input (the
  // start is a repeat), kConflict otherwise. Returns record.id when it created the instance.
  virtual Result<InstanceId> CreateInstance(const InstanceRecord& record) = 0;

  // Applies `write` (header fields, the listed executions, the context when flagged).
  virtual Status WriteInstance(const InstanceWrite& write) = 0;

  virtual Result<InstanceRecord> LoadInstance(const InstanceId& id) = 0;

  // Many instances at once (recovery loads every instance it claimed): out[i] is what
  // LoadInstance(ids[i]) returns, its record or its own error (kNotFound, a corrupt column).
  // Each record is read consistently with its executions; records of different ids may come
  // from different transactions. An error of the whole call (the backend refused) is returned
  // instead of the vector. This form loads one by one; an adapter reads many per query.
  virtual Result<std::vector<Result<InstanceRecord>>> LoadInstances(
      const std::vector<InstanceId>& ids) {
    std::vector<Result<InstanceRecord>> out;
    out.reserve(ids.size());
    for (const InstanceId& id : ids) out.push_back(LoadInstance(id));
    return out;
  }

  // Newest first.
  virtual Result<std::vector<InstanceSummary>> ListInstances(const InstanceFilter& filter) = 0;

  // --- Group commit ---------------------------------------------------------------------------

  // True when the asynchronous forms below complete on the store's own thread, sharing one
  // commit among the writes of many instances. The executor then submits writes without
  // blocking its workers; otherwise it calls the synchronous forms.
  virtual bool asynchronous() const { return false; }

  // WriteInstance, completing later: `done` is called once with the outcome, once the write is
  // durable or refused, on a thread of the store (or on the calling thread, as here).
  // `*write.record` must stay valid and unchanged until `done` is called.
  virtual void WriteInstanceAsync(const InstanceWrite& write, WriteDone done) {
    done(WriteInstance(write));
  }
  // CreateInstance, completing later, with the same rules.
  virtual void CreateInstanceAsync(const InstanceRecord& record, CreateDone done) {
    done(CreateInstance(record));
  }

  // --- Leases and recovery --------------------------------------------------------------------

  // Claims up to `limit` unfinished instances that are due (lease_until <= now: the lease of
  // the process running it expired, or, parked, its wake time came), oldest first: sets their
  // owner and lease_until. Returns their ids. Two processes claiming at once never get the same
  // instance, so a due timer fires in one process only.
  virtual Result<std::vector<InstanceId>> ClaimDue(const std::string& owner, TimePoint now,
                                                       TimePoint lease_until,
                                                       std::size_t limit) = 0;

  // Takes the lease of one instance for `owner` (an operation on it, a resume, an event for a
  // parked instance): kNotFound when there is no such instance, kFailedPrecondition when
  // another owner's lease is live at `now` (lease_until > now). A parked instance (owner "")
  // may be taken at any time. Taking a lease `owner` already holds renews it. Returns the
  // record as stored after the claim.
  virtual Result<InstanceRecord> ClaimInstance(const InstanceId& id, const std::string& owner,
                                               TimePoint now, TimePoint lease_until) = 0;

  // Takes the lease of one instance that no process is stepping, for an event that came for
  // it (a timer fired from memory, a task's reply): it is parked (owner "") or its lease
  // expired at `now`. Unlike ClaimInstance it refuses a lease `owner` itself holds
  // (kFailedPrecondition): in that process the instance is being run, or is about to be, by a
  // recovery pass that claimed it with ClaimDue, and that run sees what the event says; taking
  // it a second time would run it twice. Otherwise as ClaimInstance.
  virtual Result<InstanceRecord> ClaimIdle(const InstanceId& id, const std::string& owner,
                                           TimePoint now, TimePoint lease_until) = 0;

  // Extends to `lease_until` every lease `owner` still holds at `now` on an unfinished instance
  // (lease_until > now) that expires at `renew_before` or earlier; later ones have time left
  // and are left alone (most instances end long before their first lease does). A lease that
  // expired or was released (ClaimInstance with lease_until = now) is not revived: another
  // process may be claiming it. Returns how many it extended.
  virtual Result<std::size_t> RenewLeases(const std::string& owner, TimePoint now,
                                          TimePoint renew_before, TimePoint lease_until) = 0;

  // Counts unfinished instances, for `recover` to know whether to wait for live leases.
  virtual Result<UnfinishedSummary> Unfinished(const std::string& owner, TimePoint now) = 0;
};

}  // namespace sagaflow::engine
